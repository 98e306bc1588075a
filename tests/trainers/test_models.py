"""Model forward shapes, stage freezing, BLIP-2 checkpoint loading and save/load round trips."""
import pytest
import torch
from transformers import Blip2Model

from tests.trainers.tinyworld import SIZE, make_rows
from trainers.config import LossConfig
from trainers.data import collate
from trainers.factory import build_word_tokenizer, create_model, load_blip2, load_model, save_model, tiny_blip2_config
from trainers.objectives import stage_losses


@pytest.fixture(scope="module")
def tokenizer():
    rows = make_rows(8)
    return build_word_tokenizer([r["modification_text"] for r in rows] + ["make the circle red"])


@pytest.fixture(scope="module")
def batch(tokenizer):
    return collate(make_rows(3), tokenizer, SIZE, 16)


@pytest.mark.parametrize("kind", ["qformer_cir", "detailfusion"])
def test_forward_shapes(kind, tiny_model_cfg, tokenizer, batch):
    model = create_model(tiny_model_cfg.model_copy(update={"kind": kind}), tokenizer)
    q = model.encode_query(batch.reference, batch.input_ids, batch.attention_mask)
    g = model.encode_gallery(batch.target)
    n_tokens, dim = tiny_model_cfg.tiny.num_query_tokens, tiny_model_cfg.tiny.embed_dim
    for v in g.values():
        assert v.shape == (3, n_tokens, dim)
    assert model.score(q, g).shape == (3, 3)
    assert model.encode_text(batch.input_ids, batch.attention_mask).shape == (3, dim)
    # the fused query must see the reference image, not only the text
    swapped = model.encode_query(batch.reference.flip(0), batch.input_ids, batch.attention_mask)
    key = "fused" if kind == "qformer_cir" else "di"
    assert not torch.allclose(q[key], swapped[key])
    if kind == "detailfusion":
        assert torch.allclose(q["weights"], torch.full((3, 2), 0.5))  # zero-init compositor: even blend
    else:
        assert torch.allclose(q["fused"].norm(dim=-1), torch.ones(3))


def test_vision_tower_frozen_for_real_by_default_trained_for_tiny(tiny_model_cfg, tokenizer):
    assert not tiny_model_cfg.vision_frozen
    model = create_model(tiny_model_cfg.model_copy(update={"freeze_vision": True}), tokenizer)
    assert not any(p.requires_grad for p in model.vision.parameters())


def test_detailfusion_stages_train_the_right_parts(tiny_model_cfg, tokenizer):
    model = create_model(tiny_model_cfg.model_copy(update={"kind": "detailfusion"}), tokenizer)
    trains = lambda m: all(p.requires_grad for p in m.parameters())  # noqa: E731
    frozen = lambda m: not any(p.requires_grad for p in m.parameters())  # noqa: E731
    model.set_stage("df_di")
    assert trains(model.di) and frozen(model.gm) and frozen(model.compositor)
    model.set_stage("df_joint")
    assert trains(model.di) and trains(model.gm) and frozen(model.compositor)
    model.set_stage("df_compositor")
    assert frozen(model.di) and frozen(model.gm) and trains(model.compositor)


def test_p2p_gradient_does_not_reach_the_reverse_text(tiny_model_cfg, tokenizer):
    model = create_model(tiny_model_cfg, tokenizer)
    row = {**make_rows(1)[0], "modification_text": "make the square green", "reverse_text": "make the circle red"}
    b = collate([row], tokenizer, SIZE, 16)
    total, _ = stage_losses(model, b, "ptha", LossConfig(q2t=0.0, t2t=0.0, p2p=1.0))
    total.backward()
    grad = model.branch.embeddings.word_embeddings.weight.grad
    vocab = tokenizer.get_vocab()
    assert grad[vocab["green"]].abs().sum() > 0  # forward text: gets the pull
    assert grad[vocab["circle"]].abs().sum() == 0 and grad[vocab["red"]].abs().sum() == 0  # reverse only: none


@pytest.mark.parametrize("kind", ["qformer_cir", "detailfusion"])
def test_save_and_load_round_trip(kind, tmp_path, tiny_model_cfg, tokenizer, batch):
    model = create_model(tiny_model_cfg.model_copy(update={"kind": kind}), tokenizer).eval()
    save_model(model, tmp_path / "m", tokenizer)
    assert (tmp_path / "m" / "model.safetensors").exists()
    loaded = load_model(tmp_path / "m").eval()
    args = (batch.reference, batch.input_ids, batch.attention_mask)
    assert torch.equal(model.score(model.encode_query(*args), model.encode_gallery(batch.target)),
                       loaded.score(loaded.encode_query(*args), loaded.encode_gallery(batch.target)))
    assert loaded.tokenizer.get_vocab() == tokenizer.get_vocab()


def test_loads_a_blip2_generation_checkpoint_vision_and_qformer(tmp_path, tiny_model_cfg, tokenizer, batch):
    """A Blip2Model (like blip2-opt-2.7b) has no Q-Former text path: it starts from the query path."""
    config = tiny_blip2_config(tiny_model_cfg, len(tokenizer))
    config.qformer_config.use_qformer_text_input = False
    torch.manual_seed(1)
    blip2 = Blip2Model(config)
    with torch.no_grad():
        blip2.query_tokens.normal_()
    blip2.save_pretrained(tmp_path / "blip2")
    assert (tmp_path / "blip2" / "model.safetensors").exists()
    hf = load_blip2(tmp_path / "blip2")
    assert torch.equal(hf.vision_model.embeddings.patch_embedding.weight, blip2.vision_model.embeddings.patch_embedding.weight)
    assert torch.equal(hf.query_tokens, blip2.query_tokens)
    layer, src = hf.qformer.encoder.layer[0], blip2.qformer.encoder.layer[0]
    assert torch.equal(layer.crossattention.attention.query.weight, src.crossattention.attention.query.weight)
    assert torch.equal(layer.intermediate.dense.weight, src.intermediate_query.dense.weight)

    from trainers.qformer import QFormerCIR

    model = QFormerCIR(hf)
    assert model.score(model.encode_query(batch.reference, batch.input_ids, batch.attention_mask),
                       model.encode_gallery(batch.target)).shape == (3, 3)


def test_real_size_config_needs_a_checkpoint():
    from trainers.config import ModelConfig

    with pytest.raises(ValueError, match="model.checkpoint"):
        ModelConfig(size="real")
    assert ModelConfig(size="real", checkpoint="Salesforce/blip2-itm-vit-g").vision_frozen
