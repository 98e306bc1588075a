"""Metrics against rankings worked out by hand."""
import math

import torch

from trainers import metrics as M

# q0: target = column 1 (0.8), beaten by column 0 (0.9): rank 1
# q1: target = column 0 (0.2), beaten by 0.5 and 0.7: rank 2
SCORES = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.5, 0.7]])
TARGETS = torch.tensor([1, 0])


def test_recall_at_k():
    assert M.recall_at_k(SCORES, TARGETS, ks=(1, 2, 3)) == {"R@1": 0.0, "R@2": 50.0, "R@3": 100.0}


def test_reference_is_removed_from_the_gallery():
    # q0's reference is column 0: without it the target is first; q1 has no reference in the gallery (-1)
    out = M.recall_at_k(SCORES, TARGETS, ks=(1, 2), exclude_idx=torch.tensor([0, -1]))
    assert out == {"R@1": 50.0, "R@2": 50.0}


def test_ties_count_against_the_target():
    assert M.recall_at_k(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), ks=(1,))["R@1"] == 0.0


def test_recall_subset_uses_only_the_group():
    # q0's group is {1, 2}: the 0.9 image is outside it, so the target is first
    # q1's group is {0, 1}: 0.5 beats the target, rank 1
    groups = torch.tensor([[False, True, True], [True, True, False]])
    out = M.recall_subset_at_k(SCORES, TARGETS, groups, ks=(1, 2))
    assert out == {"Rs@1": 50.0, "Rs@2": 100.0}


def test_fashioniq_average():
    scores = torch.arange(60, 0, -1, dtype=torch.float32).view(1, 60).repeat(2, 1)  # column j ranks j
    out = M.fashioniq_recall(scores, torch.tensor([5, 20]))  # ranks 5 and 20
    assert out == {"R@10": 50.0, "R@50": 100.0, "R_avg": 75.0}


def test_circo_map_with_two_ground_truths():
    # ranked order 0,1,2,3; positives at ranks 2 and 4: P@2 = 1/2, P@4 = 2/4
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    positives = torch.tensor([[False, True, False, True]])
    out = M.map_at_k(scores, positives, ks=(1, 2, 4))
    assert out["mAP@1"] == 0.0
    assert math.isclose(out["mAP@2"], 100 * 0.5 / 2)  # (1/2) / min(2, 2)
    assert math.isclose(out["mAP@4"], 100 * (0.5 + 0.5) / 2)  # (1/2 + 2/4) / min(4, 2)


def test_hard_case_recall_and_who_won():
    # columns: target, text-aligned neg, image-aligned neg, reference
    scores = torch.tensor([[0.9, 0.5, 0.95, 0.1], [0.9, 0.5, 0.2, 0.3]])
    out = M.hard_case_recall_at_1(scores)
    assert out["hard_R@1"] == 50.0
    assert out["hard_lost_to_neg_image"] == 50.0 and out["hard_lost_to_neg_text"] == 0.0
    # a missing negative is not a competitor
    valid = torch.tensor([[True, True, False, True], [True, True, True, True]])
    assert M.hard_case_recall_at_1(scores, valid)["hard_R@1"] == 100.0
