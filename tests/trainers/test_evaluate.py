"""evaluate() end to end, and the FBCIR focus diagnosis on stub models whose focus is known."""
from types import SimpleNamespace

import pytest
import torch

from tests.trainers.tinyworld import SIZE, make_rows
from trainers.config import EvalConfig
from trainers.evaluate import Benchmark, Query, benchmark_from_dataset, evaluate
from trainers.factory import build_word_tokenizer, create_model
from trainers.focus import focus_diagnosis, plot_focus


class Stub(torch.nn.Module):
    """A 'model' with a hand-written score: text-only or image-only, so its focus is known."""

    def __init__(self, use: str):
        super().__init__()
        self.use = use
        self.blip2_config = SimpleNamespace(vision_config=SimpleNamespace(image_size=SIZE),
                                            qformer_config=SimpleNamespace(max_position_embeddings=16))

    def encode_gallery(self, px):
        return {"first": torch.arange(len(px)) == 0}  # the first candidate is the target

    def encode_query(self, px, ids, mask):
        if self.use == "text":
            return {"q": mask.sum(1).float()}  # each kept token adds margin
        return {"q": px[:, :, : SIZE // 2, : SIZE // 2].abs().sum((1, 2, 3))}  # only the top-left quarter

    def score(self, q, g):
        return q["q"][:, None] * g["first"][None, :].float()


@pytest.fixture
def tokenizer(rows):
    return build_word_tokenizer([r["modification_text"] for r in rows])


def test_text_only_model_has_all_text_focus(rows, tokenizer, tmp_path):
    report = focus_diagnosis(Stub("text"), rows[:2], tokenizer, grid=2)
    assert report.n_queries == 2
    assert report.text_share == 1.0 and report.image_share == 0.0 and report.imbalance == 1.0
    # "make the square green" without its special tokens: four words, each worth 1 margin point
    assert [d for _, d in report.token_drops[0]] == [1.0, 1.0, 1.0, 1.0]
    assert plot_focus(report, tmp_path / "focus.png").read_bytes()[:4] == b"\x89PNG"


def test_image_only_model_has_all_image_focus_in_its_patch(rows, tokenizer):
    report = focus_diagnosis(Stub("image"), rows[:2], tokenizer, grid=2)
    assert report.image_share == 1.0 and report.imbalance == 1.0
    drops = report.patch_drops
    assert drops[0, 0] > 0 and drops[0, 1] == drops[1, 0] == drops[1, 1] == 0  # only the cell it reads


def test_evaluate_on_a_hand_built_benchmark():
    # Stub("text") scores only the first gallery image by the query's token count, so that is
    # where every query ranks first; with it as the target R@1 = 100, else the target ties at 0 (lost).
    tok = build_word_tokenizer(["a b c"])
    images = {name: make_rows(1)[0]["reference_image"] for name in "xyz"}
    bench = Benchmark("toy", images, [Query("y", "a b", ["x"]), Query("x", "a", ["z"])])
    out = evaluate(Stub("text"), bench, EvalConfig(ks=(1, 2)), tokenizer=tok)
    assert out["R@1"] == 50.0  # query 1 finds x; query 2's reference x is removed and z ties y at 0
    assert "hard_R@1" not in out  # no FBCIR negatives in this benchmark


def test_evaluate_tiny_model_on_a_dataset_split(dataset_dir, tiny_model_cfg, tokenizer):
    model = create_model(tiny_model_cfg, tokenizer)
    bench = benchmark_from_dataset(dataset_dir, "train")
    assert len(bench.queries) == 8 and len(bench.images) == len({r for q in bench.queries for r in (q.reference_id, q.target_ids[0])})
    out = evaluate(model, bench, EvalConfig(batch_size=4), tokenizer=tokenizer)
    for key in ("R@1", "R@5", "mAP@5", "Rs@1", "hard_R@1", "hard_lost_to_neg_text"):
        assert 0.0 <= out[key] <= 100.0
    assert out["n_hard"] == 8.0
    assert model.training  # evaluate restores the mode it found


def test_focus_on_a_tiny_model_runs(rows, tiny_model_cfg, tokenizer):
    report = focus_diagnosis(create_model(tiny_model_cfg, tokenizer), rows[:2], tokenizer, grid=2)
    assert report.patch_drops.shape == (2, 2)
    assert 0.0 <= report.imbalance <= 1.0
    assert report.image_share + report.text_share in (0.0, pytest.approx(1.0))
