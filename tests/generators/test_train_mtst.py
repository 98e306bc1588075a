import numpy as np
import pytest
import torch

from generators.mtst.config import MTSTConfig
from generators.mtst.model import MTSTGenerator
from generators.mtst.train import train_mtst

from .conftest import SMALL


def _config(tmp_path, **train):
    opts = {"epochs": 3, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "checkpoint_every": 3, "progress": False,
            "caption_steps": 0, "cache_dir": str(tmp_path / "cache")} | train
    return MTSTConfig(model=SMALL.model_copy(update={"image_size": 32}), train=opts)


def _weights(path):
    return MTSTGenerator.from_pretrained(path).state_dict()


def _resumed_equals_whole(tmp_path, seed_set, **opts):
    """Train uninterrupted and cut after 4 steps then resumed: same losses, same weights; the whole run."""
    whole = train_mtst(_config(tmp_path / "whole", **opts), seed_set)
    cfg = _config(tmp_path / "cut", **opts)
    train_mtst(cfg, seed_set, stop_after=4)
    rest = train_mtst(cfg, seed_set)
    assert rest.losses == whole.losses
    wa, wb = _weights(whole.model_dir), _weights(rest.model_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    return whole


def test_loss_decreases_and_a_curve_is_drawn(tmp_path, seed_set):
    res = train_mtst(_config(tmp_path, epochs=6), seed_set)
    assert res.steps == 18 and not res.cached
    assert sum(res.losses[-3:]) < sum(res.losses[:3]) / 2
    assert (res.run_dir / "loss.png").stat().st_size > 0


def test_a_rerun_with_the_same_config_loads_instead_of_training(tmp_path, seed_set):
    first = train_mtst(_config(tmp_path), seed_set)
    again = train_mtst(_config(tmp_path), seed_set)
    assert again.cached and again.model_dir == first.model_dir and again.losses == first.losses
    other = train_mtst(_config(tmp_path, lr=1e-3), seed_set)
    assert not other.cached and other.run_dir != first.run_dir


def test_same_seed_same_weights(tmp_path, seed_set):
    a = train_mtst(_config(tmp_path / "a"), seed_set)
    b = train_mtst(_config(tmp_path / "b"), seed_set)
    wa, wb = _weights(a.model_dir), _weights(b.model_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train_mtst(_config(tmp_path / "c", seed=1), seed_set)
    assert not torch.equal(_weights(c.model_dir)["query_tokens"], wa["query_tokens"])


def test_resume_continues_the_step_count_and_ends_where_an_uninterrupted_run_does(tmp_path, seed_set):
    whole = train_mtst(_config(tmp_path / "whole"), seed_set)
    cfg = _config(tmp_path / "cut")
    part = train_mtst(cfg, seed_set, stop_after=4)
    assert part.steps == 4 and part.model_dir.name == "step-0000004"
    rest = train_mtst(cfg, seed_set)
    assert rest.steps == whole.steps == 9 and len(rest.losses) == 9
    assert rest.losses[:4] == part.losses
    wa, wb = _weights(whole.model_dir), _weights(rest.model_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_caption_stage_teaches_scene_words_before_the_pair_training(tmp_path, seed_set):
    from pipeline.shapesworld.sets.mtst import shapesworld_captions
    from generators.mtst.train import _caption_stage, _initial_model

    cfg = _config(tmp_path, caption_steps=12, caption_images=64, caption_batch_size=8, batch_size=4, warmup_steps=1)
    images, captions = shapesworld_captions(64, seed=0, image_size=32)
    assert images.shape == (64, 32, 32, 3) and all(" scene with " in c for c in captions)
    assert shapesworld_captions(64, seed=0, image_size=32)[1] == captions  # from the seed
    model = _initial_model(cfg, seed_set, (images, captions))
    assert model.tokenizer.convert_tokens_to_ids("scene") != model.tokenizer.unk_token_id
    losses = _caption_stage(model, cfg, images, captions)
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])
    # the whole run: the stage runs first, and the tokenizer saved with the model knows caption words;
    # 12 steps leave the caption loss high, and the run says so
    with pytest.warns(UserWarning, match="caption stage ended at loss .* raise train.caption_steps"):
        res = train_mtst(cfg, seed_set)
    back = MTSTGenerator.from_pretrained(res.model_dir)
    assert back.tokenizer.convert_tokens_to_ids("scene") != back.tokenizer.unk_token_id


def test_pair_stage_dropout_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, seed_set):
    whole = _resumed_equals_whole(tmp_path, seed_set, dropout=0.2)
    plain = train_mtst(_config(tmp_path / "plain"), seed_set)
    assert plain.losses[0] != whole.losses[0]  # dropout changes the loss
    assert MTSTGenerator.from_pretrained(whole.model_dir).config.qformer_config.hidden_dropout_prob == 0.2


def test_freeze_vision_keeps_the_vision_encoder_and_trains_the_rest(tmp_path, seed_set):
    from generators.mtst.train import _initial_model

    cfg = _config(tmp_path, freeze_vision=True)
    start = _initial_model(cfg, seed_set).state_dict()
    res = train_mtst(cfg, seed_set)
    end = _weights(res.model_dir)
    vision = [k for k in start if k.startswith("vision_model.")]
    assert vision and all(torch.equal(start[k], end[k]) for k in vision)
    assert not torch.equal(start["query_tokens"], end["query_tokens"])
    cut = _config(tmp_path / "cut", freeze_vision=True)
    train_mtst(cut, seed_set, stop_after=4)
    rest = _weights(train_mtst(cut, seed_set).model_dir)
    assert all(torch.equal(rest[k], end[k]) for k in end)


def test_the_training_hash_changes_with_what_changes_the_weights_only():
    base = MTSTConfig()
    h = base.train_hash()
    assert MTSTConfig(train={"progress": False, "num_threads": 1, "cache_dir": "elsewhere"}).train_hash() == h
    # options added later hash as before at the value that trains as before, and change it otherwise
    assert MTSTConfig(train={"dropout": None, "freeze_vision": False, "permute_attributes": 1}).train_hash() == h
    others = {MTSTConfig(train=t).train_hash() for t in ({"dropout": 0.0}, {"dropout": 0.1}, {"freeze_vision": True},
                                                         {"permute_attributes": 0.5}, {"lr": 1e-3})}
    assert len(others) == 5 and h not in others
    # at 0 the option hashes as before it existed: the model of the defaults before it (and before 13
    # epochs, 28,000 triplets and the short instruction) is found in the cache
    from generators.mtst.prompt import INSTRUCTION

    old = MTSTConfig(model={"instruction": INSTRUCTION}, data={"n_triplets": 4000},
                     train={"permute_attributes": 0, "epochs": 16})
    assert old.train_hash() == "28ce7a211cfb7529"


def test_permute_attributes_trains_on_renamed_pairs_deterministically_and_resumes(tmp_path):
    from pipeline.shapesworld.sets.mtst import SeedSet, shapesworld_seed_set
    from generators.mtst.train import _permuted_batch

    shapes = shapesworld_seed_set(24, seed=0, image_size=32, max_edits=2)
    batch, px = _permuted_batch(shapes, [3, 5], np.random.default_rng(0), 1.0, 32)
    assert len(batch) == 2 and px.shape == (4, 32, 32, 3) and batch.pairs[1][:2] == (2, 3)
    assert batch.pairs[0][2] != shapes.pairs[3][2] or not np.array_equal(batch.images[0], shapes.images[6])
    kept, _ = _permuted_batch(shapes, [3, 5], np.random.default_rng(0), 0.0, 32)
    assert kept.pairs[0][2:] == shapes.pairs[3][2:] and np.array_equal(kept.images[0], shapes.images[6])

    whole = _resumed_equals_whole(tmp_path, shapes, permute_attributes=1.0)
    tok = MTSTGenerator.from_pretrained(whole.model_dir).tokenizer  # every renamed word is in the vocabulary
    assert all(tok.convert_tokens_to_ids(w) != tok.unk_token_id for w in ("purple", "star", "autumn", "an"))
    plain = train_mtst(_config(tmp_path / "plain", permute_attributes=0.0), shapes)
    assert plain.losses[0] != whole.losses[0]  # other images and texts from the first step
    # a seed set without scenes cannot be re-rendered: it trains as annotated, and the vocabulary is its own
    noise = SeedSet.random(8, image_size=32, seed=0)
    on = train_mtst(_config(tmp_path / "noise-on", permute_attributes=1.0), noise)
    off = train_mtst(_config(tmp_path / "noise-off", permute_attributes=0.0), noise)
    assert on.losses == off.losses
    assert "purple" not in MTSTGenerator.from_pretrained(on.model_dir).tokenizer.get_vocab()


def test_a_shapesworld_seed_set_trains_the_same_through_the_cirr_layout(tmp_path):
    """The import loses nothing: the seed set written as a CIRR folder (benchmarks/mtst_import_parity.py,
    reverse texts in the authors' file) trains to the same losses and the same weights as natively."""
    from benchmarks.mtst_import_parity import write_as_cirr
    from pipeline.shapesworld.sets.mtst import shapesworld_seed_set

    shapes = shapesworld_seed_set(16, seed=0, image_size=32, max_edits=2)
    root = write_as_cirr(shapes, tmp_path / "cirr_dataset")
    native = train_mtst(_config(tmp_path / "native", permute_attributes=0.0), shapes)
    cfg = _config(tmp_path / "cirr", permute_attributes=0.0).model_copy(
        update={"data": MTSTConfig().data.model_copy(update={"kind": "cirr", "path": root, "read_reverse": True})})
    via_cirr = train_mtst(cfg)
    seed = via_cirr.info["seed_set"]
    assert seed["kind"] == "cirr" and seed["triplets"] == 16 and seed["reverse_texts"] == 16
    assert via_cirr.losses == native.losses
    wa, wb = _weights(native.model_dir), _weights(via_cirr.model_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
