import torch
from transformers import (
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    LlamaConfig,
)

from generators.mtst.model import MTSTGenerator
from generators.mtst.tokenizer import build_word_tokenizer


def _same(a: torch.nn.Module | torch.Tensor, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _tiny_instructblip(tmp_path, tokenizer, llm_hidden: int = 64):
    """A tiny InstructBLIP checkpoint laid out like Salesforce/instructblip-vicuna-7b (``llm_hidden``
    128 with 2 heads gives the head dim 64 that vLLM's CPU attention needs)."""
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, image_size=32, patch_size=8),
        qformer_config=InstructBlipQFormerConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=64),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=llm_hidden, intermediate_size=2 * llm_hidden,
                                num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2),
        num_query_tokens=4,
    )
    torch.manual_seed(0)
    ib = InstructBlipForConditionalGeneration(config)
    with torch.no_grad():
        ib.query_tokens.normal_()  # the init leaves them zero; make the comparison mean something
    ib.save_pretrained(tmp_path / "ib")
    tokenizer.save_pretrained(tmp_path / "ib")
    tokenizer.save_pretrained(tmp_path / "ib" / "qformer_tokenizer")
    return ib, tmp_path / "ib"


def test_instructblip_checkpoint_loads_into_the_generator(tmp_path, tokenizer):
    ib, path = _tiny_instructblip(tmp_path, tokenizer)
    model = MTSTGenerator.from_pretrained(path)
    for name in ("vision_model", "qformer", "language_projection", "language_model", "query_tokens"):
        assert _same(getattr(model, name), getattr(ib, name)), name
    # Real size: vision encoder and LLM frozen, Q-Former + queries + projection trained.
    assert not any(p.requires_grad for p in model.vision_model.parameters())
    assert not any(p.requires_grad for p in model.language_model.parameters())
    assert all(p.requires_grad for p in model.qformer.parameters())
    assert model.query_tokens.requires_grad and model.language_projection.weight.requires_grad


def test_a_finetuned_checkpoint_saves_only_what_it_trained(tmp_path, tokenizer):
    _, path = _tiny_instructblip(tmp_path, tokenizer)
    model = MTSTGenerator.from_pretrained(path)
    with torch.no_grad():
        model.query_tokens.add_(1.0)
    model.save_pretrained(tmp_path / "mtst")
    full = (path / "model.safetensors").stat().st_size
    assert (tmp_path / "mtst" / "model.safetensors").stat().st_size < full / 2
    back = MTSTGenerator.from_pretrained(tmp_path / "mtst")
    assert _same(back, model)


def test_save_and_load_round_trip(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    back = MTSTGenerator.from_pretrained(tmp_path / "m")
    assert _same(back, tiny_model)
    assert back.train_all and back.instruction == tiny_model.instruction
    assert back.tokenizer.get_vocab() == tiny_model.tokenizer.get_vocab()


def test_tiny_trains_everything_unless_told(tiny_model):
    assert all(p.requires_grad for p in tiny_model.parameters())
    tiny_model.set_trainable(False)
    trained = {n.split(".")[0] for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert trained == {"query_tokens", "qformer", "joint_segments", "language_projection"}


def test_word_tokenizer_round_trips_text(tiny_model):
    text = "Make the red circle blue, then remove it."
    tok = build_word_tokenizer([text])
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == 10  # "blue" "," ... "it" "."
    tiny_model.tokenizer = tok
    assert tiny_model.decode([ids + [tok.eos_token_id, 5]]) == [text]


def test_prefix_has_three_query_blocks_and_the_instruction(tiny_model):
    feats = tiny_model.encode_images(torch.randn(2, 3, 32, 32))
    prefix = tiny_model.prefix_embeds(feats[:1], feats[1:])
    n_query = tiny_model.config.num_query_tokens
    assert prefix.shape == (1, 3 * n_query + len(tiny_model.instruction_ids), tiny_model.config.text_config.hidden_size)


def test_encode_images_batched_matches_one_by_one(tiny_model):
    x = torch.randn(3, 3, 32, 32)
    batched = tiny_model.encode_images(x)
    for i in range(3):
        one = tiny_model.encode_images(x[i : i + 1])
        torch.testing.assert_close(batched.queries[i : i + 1], one.queries, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched.patches[i : i + 1], one.patches, rtol=1e-4, atol=1e-5)


def test_loss_counts_text_tokens_only(tiny_model):
    feats = tiny_model.encode_images(torch.randn(2, 3, 32, 32))
    loss = tiny_model.loss(feats[:1], feats[1:], ["make it red"])
    loss.backward()
    assert loss.item() > 0 and tiny_model.query_tokens.grad is not None


def test_generate_greedy_and_beam_give_text(tiny_model):
    feats = tiny_model.encode_images(torch.randn(2, 3, 32, 32))
    for beams in (1, 2):
        texts = tiny_model.generate(feats[:2], feats[[1, 0]], num_beams=beams, max_new_tokens=4)
        assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_bf16_forward(tiny_model):
    model = tiny_model.to(torch.bfloat16)
    feats = model.encode_images(torch.randn(2, 3, 32, 32))
    assert feats.queries.dtype == torch.bfloat16
    assert model.loss(feats[:1], feats[1:], ["make it red"]).isfinite()


def test_the_joint_pass_knows_which_image_is_the_reference(tokenizer):
    # Without segment embeddings (and without the difference block) the joint Q-Former pass is the
    # same for (a, b) and (b, a).
    from tests.generators.conftest import SMALL

    plain = {"joint_difference": False, "interleave_prefix": False}  # block order: slices below
    tiny_model = MTSTGenerator.tiny(tokenizer, SMALL.model_copy(update=plain), seed=0)
    feats = tiny_model.encode_images(torch.randn(2, 3, 32, 32))
    n = tiny_model.config.num_query_tokens
    with torch.no_grad():  # as after training: the init (std 0.02) differs only a little
        tiny_model.joint_segments.normal_()
    ab = tiny_model.prefix_embeds(feats[[0]], feats[[1]])
    ba = tiny_model.prefix_embeds(feats[[1]], feats[[0]])
    torch.testing.assert_close(ab[:, :n], ba[:, n:2 * n])  # per-image blocks swap places
    assert not torch.allclose(ab[:, 2 * n:3 * n], ba[:, 2 * n:3 * n], atol=1e-4)
    with torch.no_grad():
        tiny_model.joint_segments.zero_()
    ab = tiny_model.prefix_embeds(feats[[0]], feats[[1]])
    ba = tiny_model.prefix_embeds(feats[[1]], feats[[0]])
    torch.testing.assert_close(ab[:, 2 * n:3 * n], ba[:, 2 * n:3 * n])


def test_region_queries_read_only_their_region_in_every_pass(tiny_model):
    # SMALL: 4 queries on a 2 x 2 grid over 4 x 4 patches: query r * 2 + c reads the 2 x 2 patches of
    # region (r, c) and CLS, of the one image (per-image pass) or of all three blocks (joint pass:
    # reference, target and their difference).
    tiny_model.qformer.set_attn_implementation("eager")  # sdpa does not return attention weights
    seen = []
    real = tiny_model.qformer.forward

    def forward(*args, **kwargs):
        out = real(*args, output_attentions=True, **kwargs)
        seen.append(out.cross_attentions[0])  # [B, heads, queries, patches]
        return out

    tiny_model.qformer.forward = forward
    feats = tiny_model.encode_images(torch.randn(2, 3, 32, 32))
    tiny_model.prefix_embeds(feats[[0]], feats[[1]])
    region = torch.zeros(4, 17, dtype=torch.bool)
    region[:, 0] = True
    for q, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        for pr in (2 * r, 2 * r + 1):
            for pc in (2 * c, 2 * c + 1):
                region[q, 1 + pr * 4 + pc] = True
    per_image, joint = seen
    assert torch.equal(per_image[0, 0] > 0, region) and torch.equal(per_image[1, 1] > 0, region)
    assert torch.equal(joint[0, 0] > 0, region.repeat(1, 3))
    torch.testing.assert_close(joint.sum(-1), torch.ones_like(joint.sum(-1)))


def test_without_a_query_grid_every_query_reads_every_patch(tokenizer):
    from tests.generators.conftest import SMALL

    model = MTSTGenerator.tiny(tokenizer, SMALL.model_copy(update={"query_grid": None}), seed=0)
    assert model._windows is None
    feats = model.encode_images(torch.randn(2, 3, 32, 32))
    assert model.prefix_embeds(feats[[0]], feats[[1]]).isfinite().all()


def test_the_query_grid_is_saved_with_the_model(tiny_model, tmp_path):
    loaded = MTSTGenerator.from_pretrained(tiny_model.save_pretrained(tmp_path / "m"))
    assert loaded.query_grid == 2 and torch.equal(loaded._windows, tiny_model._windows)


def test_joint_difference_adds_target_minus_reference_patches_to_the_joint_pass(tokenizer, tmp_path):
    from tests.generators.conftest import SMALL

    model = MTSTGenerator.tiny(tokenizer, SMALL, seed=0)  # joint_difference is the default
    assert model.joint_difference and model.joint_segments.shape[0] == 3
    seen = []
    real = model.qformer.forward

    def forward(*args, **kwargs):
        seen.append((kwargs["encoder_hidden_states"], kwargs["encoder_attention_mask"]))
        return real(*args, **kwargs)

    model.qformer.forward = forward
    feats = model.encode_images(torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        model.prefix_embeds(feats[[0]], feats[[1]])
    states, mask = seen[-1]
    ref, tgt, seg = feats.patches[0], feats.patches[1], model.joint_segments
    n = ref.shape[0]
    torch.testing.assert_close(states[0], torch.cat([ref + seg[0], tgt + seg[1], tgt - ref + seg[2]]))
    # each region query reads its region (and CLS) of all three blocks
    assert torch.equal(mask[0, 0] == 0, model._windows.repeat(1, 3)) and mask.shape[-1] == 3 * n
    loaded = MTSTGenerator.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert loaded.joint_difference and torch.equal(loaded.joint_segments, model.joint_segments)
    # without it (and in models saved before the option) the joint pass reads two blocks
    plain = MTSTGenerator.tiny(tokenizer, SMALL.model_copy(update={"joint_difference": False}), seed=0)
    assert plain.joint_segments.shape[0] == 2


def test_interleave_orders_the_prefix_region_by_region(tokenizer, tmp_path):
    from tests.generators.conftest import SMALL

    model = MTSTGenerator.tiny(tokenizer, SMALL, seed=0)  # interleave_prefix is the default
    assert model.interleave
    feats = model.encode_images(torch.randn(2, 3, 32, 32))
    n = model.config.num_query_tokens
    with torch.no_grad():
        mixed = model.prefix_embeds(feats[[0]], feats[[1]])
        model.interleave = False
        blocks = model.prefix_embeds(feats[[0]], feats[[1]])
        model.interleave = True
    # region i: ref q_i, target q_i, joint q_i; then the instruction, as in block order
    order = [b * n + i for i in range(n) for b in range(3)]
    torch.testing.assert_close(mixed[:, : 3 * n], blocks[:, order])
    torch.testing.assert_close(mixed[:, 3 * n:], blocks[:, 3 * n:])
    assert MTSTGenerator.from_pretrained(model.save_pretrained(tmp_path / "m")).interleave


def test_set_dropout_acts_in_training_only_and_is_saved_with_the_model(tiny_model, tmp_path):
    model = tiny_model
    model.set_dropout(0.3)
    assert model.config.qformer_config.hidden_dropout_prob == 0.3 == model.config.text_config.attention_dropout
    feats = model.encode_images(torch.randn(2, 3, 32, 32))
    model.train()
    a = model.loss(feats[:1], feats[1:], ["make it red"])
    assert not torch.equal(a, model.loss(feats[:1], feats[1:], ["make it red"]))  # another mask each call
    model.eval()
    with torch.no_grad():
        feats = model.encode_images(torch.randn(2, 3, 32, 32))
        b = model.loss(feats[:1], feats[1:], ["make it red"])
        assert torch.equal(b, model.loss(feats[:1], feats[1:], ["make it red"]))
    model.save_pretrained(tmp_path / "m")
    back = MTSTGenerator.from_pretrained(tmp_path / "m")
    assert back.config.qformer_config.attention_probs_dropout_prob == 0.3
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in back.qformer.modules())
    model.set_dropout(0.0)  # off again: training-mode losses agree
    model.train()
    with torch.no_grad():
        assert torch.equal(model.loss(feats[:1], feats[1:], ["make it red"]), b)
