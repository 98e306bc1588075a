"""Each loss on hand-made tensors, against numbers worked out by hand."""
import math

import torch
import torch.nn.functional as F

from trainers import losses as L

EYE = torch.eye(2)


def test_info_nce_2x2_matches_hand_computation():
    # row i: -log(e^1 / (e^1 + e^0)) = log(1 + e^-1) for both rows
    assert math.isclose(float(L.info_nce(EYE, 1.0)), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    # tau = 0.5 doubles the logits: log(1 + e^-2) = 0.126928
    assert math.isclose(float(L.info_nce(EYE, 0.5)), math.log(1 + math.exp(-2)), rel_tol=1e-6)


def test_label_smoothing_spreads_over_columns():
    # log p(correct) = -0.313262, log p(other) = -1.313262
    # loss = 0.9 * 0.313262 + 0.1 * (0.313262 + 1.313262) / 2 = 0.363262
    loss = L.info_nce(EYE, 1.0, label_smoothing=0.1)
    nll = math.log(1 + math.exp(-1))
    assert math.isclose(float(loss), 0.9 * nll + 0.1 * (nll + nll + 1) / 2, rel_tol=1e-6)
    assert math.isclose(float(loss), float(F.cross_entropy(EYE, torch.arange(2), label_smoothing=0.1)), rel_tol=1e-6)


def test_fbcir_negatives_join_only_their_own_row_and_null_ones_vanish():
    # row 0 gets one extra negative scored 1: log(e + 1 + e) - 1 = log(2 + e^-1)
    # row 1's negative is null (masked): unchanged log(1 + e^-1)
    extra = torch.tensor([[1.0], [0.0]])
    mask = torch.tensor([[True], [False]])
    loss = L.info_nce(EYE, 1.0, extra=extra, extra_mask=mask)
    expected = (math.log(2 + math.exp(-1)) + math.log(1 + math.exp(-1))) / 2  # 0.587629
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    # and a masked column takes no share of the label smoothing either
    smoothed = L.info_nce(EYE, 1.0, extra=extra, extra_mask=torch.zeros(2, 1, dtype=torch.bool), label_smoothing=0.1)
    assert math.isclose(float(smoothed), float(L.info_nce(EYE, 1.0, label_smoothing=0.1)), rel_tol=1e-6)


def test_max_sim_takes_the_best_query_token():
    query = torch.tensor([[1.0, 0.0]])
    tokens = torch.tensor([[[0.0, 1.0], [0.6, 0.8]], [[-1.0, 0.0], [0.0, -1.0]]])  # 2 images x 2 tokens
    assert torch.allclose(L.max_sim(query, tokens), torch.tensor([[0.6, 0.0]]))


def test_q2t_with_fbcir_negatives_equals_hand_computation():
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # Q = 1: sim = identity
    negs = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])  # (B=2, K=2, Q=1, E=2)
    mask = torch.tensor([[True, True], [False, False]])
    # row 0: extras score 1 and 0 -> log(e + 1 + e + 1) - 1 = log(2 + 2e^-1); row 1 as plain: log(1 + e^-1)
    expected = (math.log(2 + 2 * math.exp(-1)) + math.log(1 + math.exp(-1))) / 2
    got = L.q2t_loss(query, targets, 1.0, neg_tokens=negs, neg_mask=mask)
    assert math.isclose(float(got), expected, rel_tol=1e-6)


def test_di_loss_adds_the_reference_to_the_denominator():
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    refs = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])  # row 0's reference looks like its target
    # row 0: logits [1, 0 | 1] -> log(2 + e^-1) = 0.861995; row 1: [0, 1 | 0] -> log(1 + 2e^-1) = 0.551444
    expected = (math.log(2 + math.exp(-1)) + math.log(1 + 2 * math.exp(-1))) / 2
    assert math.isclose(float(L.di_loss(query, targets, refs, 1.0)), expected, rel_tol=1e-6)
    assert float(L.di_loss(query, targets, refs, 1.0)) > float(L.q2t_loss(query, targets, 1.0))


def test_t2t_text_to_text_and_text_to_target():
    assert math.isclose(float(L.t2t_loss(EYE, EYE, 1.0)), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    assert math.isclose(float(L.t2t_loss(EYE, EYE.unsqueeze(1), 1.0)), math.log(1 + math.exp(-1)), rel_tol=1e-6)


def test_p2p_is_mse_and_sends_no_gradient_into_the_reverse_branch():
    forward = torch.tensor([[1.0, 0.0]], requires_grad=True)
    reverse = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss = L.p2p_loss(forward, reverse)
    assert math.isclose(float(loss.detach()), 0.5)  # ((1-0)^2 + 0^2) / 2
    loss.backward()
    assert torch.allclose(forward.grad, torch.tensor([[1.0, 0.0]]))  # d/df mean((f-r)^2) = 2(f-r)/2
    assert reverse.grad is None


def test_learnable_temperature_gets_a_gradient_and_is_clamped():
    temp = torch.tensor(0.07, requires_grad=True)
    L.info_nce(EYE, L.clamp_temperature(temp, 0.001, 0.5)).backward()
    assert temp.grad is not None and temp.grad != 0
    assert float(L.clamp_temperature(torch.tensor(0.9), 0.001, 0.5)) == 0.5


def test_weighted_total():
    parts = {"q2t": torch.tensor(2.0), "p2p": torch.tensor(4.0)}
    assert float(L.weighted_total(parts, {"p2p": 0.5})) == 4.0
