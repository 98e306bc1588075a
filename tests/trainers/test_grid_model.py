"""The grid-aligned tiny model (conv stem, region queries, region scores) and the table's claim tests."""
import pytest
import torch

from trainers.config import ModelConfig, TinyConfig
from trainers.factory import build_word_tokenizer, create_model, load_model, save_model
from trainers.reproduce.claims import paired, test_claims as claim_tests

GRID = dict(patch_size=21, num_query_tokens=9, query_grid=3, conv_stem=8, region_scores=True, vision_hidden=16,
            qformer_hidden=16, embed_dim=8, heads=2)


def _model(**tiny):
    tok = build_word_tokenizer(["paint the red star blue"])
    return create_model(ModelConfig(image_size=64, tiny=TinyConfig(**tiny)), tok), tok


def test_grid_model_shapes_and_save_load_round_trip(tmp_path):
    model, tok = _model(**GRID)
    x, ids = torch.randn(2, 3, 64, 64), torch.tensor([[2, 5, 6, 3]] * 2)
    gallery, query = model.encode_gallery(x), model.encode_query(x, ids, torch.ones_like(ids))
    assert gallery["tokens"].shape == (2, 1, 72) and query["fused"].shape == (2, 72)
    assert model.score(query, gallery).shape == (2, 2)
    save_model(model, tmp_path, tok)
    again = load_model(tmp_path)
    assert torch.allclose(again.encode_gallery(x)["tokens"], gallery["tokens"], atol=1e-6)


def test_region_queries_read_only_their_cell():
    model, _ = _model(**{**GRID, "region_scores": False})
    bias = model.branch.windows  # (9 queries, CLS + 9 patches): 0 where read, -inf-like elsewhere
    assert bias.shape == (9, 10) and (bias[:, 0] == 0).all()
    assert ((bias[:, 1:] == 0) == torch.eye(9, dtype=torch.bool)).all()
    with pytest.raises(ValueError):
        _model(**{**GRID, "num_query_tokens": 4})


def test_defaults_keep_the_old_model():
    model, _ = _model()
    assert model.branch.windows is None and not model.branch.regions
    assert isinstance(model.vision.model.embeddings.patch_embedding, torch.nn.Conv2d)


def test_claims_are_paired_over_seeds():
    runs = [{"row": row, "seed": s, "metrics": {"R@1": v + s}}
            for s in (0, 1, 2) for row, v in (("seed set only", 10.0), ("+ synthetic pretraining", 20.0))]
    assert paired(runs, "seed set only", "+ synthetic pretraining", "R@1") == [10.0, 10.0, 10.0]
    (claim,) = [c for c in claim_tests(runs) if c["metric"] == "R@1"]
    assert claim["mean"] == 10.0 and claim["holds"] and claim["p"] == 0.0
