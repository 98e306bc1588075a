"""Training through accelerate on CPU: gradient accumulation splits the global batch (same schedule,
resumable), bf16 mixed precision holds the frozen parts in bf16, a seed set read from shards trains."""
import numpy as np
import pytest
import torch

from generators.mtst.accel import micro_batches
from generators.mtst.config import MTSTConfig
from generators.mtst.model import MTSTGenerator
from generators.mtst.train import train_mtst

from .conftest import SMALL


def _config(tmp_path, **train):
    opts = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "checkpoint_every": 2, "progress": False,
            "caption_steps": 0, "cache_dir": str(tmp_path / "cache")} | train
    return MTSTConfig(model=SMALL.model_copy(update={"image_size": 32}), train=opts)


def test_micro_batches_split_one_global_batch_over_processes_and_accumulation():
    idx = np.arange(16)
    per_rank = [micro_batches(idx, r, 2, 2) for r in range(2)]
    assert [len(m) for m in per_rank[0]] == [4, 4]
    assert sorted(np.concatenate([m for ms in per_rank for m in ms]).tolist()) == list(range(16))
    with pytest.raises(ValueError, match="grad_accum"):
        micro_batches(np.arange(2), 0, 1, 4)


def test_grad_accum_keeps_the_schedule_and_resumes_to_the_same_weights(tmp_path, seed_set):
    plain = train_mtst(_config(tmp_path / "plain"), seed_set)
    whole = train_mtst(_config(tmp_path / "whole", grad_accum=2), seed_set)
    assert whole.steps == plain.steps == 6
    assert abs(whole.losses[0] - plain.losses[0]) < 0.05  # the same pairs, as two halves
    cfg = _config(tmp_path / "cut", grad_accum=2)
    train_mtst(cfg, seed_set, stop_after=3)
    rest = train_mtst(cfg, seed_set)
    assert rest.losses == whole.losses
    a = MTSTGenerator.from_pretrained(whole.model_dir).state_dict()
    b = MTSTGenerator.from_pretrained(rest.model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_mixed_precision_trains_on_cpu_and_the_next_run_can_go_back(tmp_path, seed_set):
    bf16 = train_mtst(_config(tmp_path / "bf16", mixed_precision="bf16", epochs=1), seed_set)
    assert all(np.isfinite(bf16.losses)) and bf16.info["mixed_precision"] == "bf16"
    fp32 = train_mtst(_config(tmp_path / "fp32", mixed_precision="no", epochs=1), seed_set)
    assert fp32.losses != bf16.losses


def test_two_cpu_processes_train_the_run_one_process_would(tmp_path):
    """train.processes: 2 launches two one-thread processes (DDP over gloo, both stages split over them)
    that train into the cache folder a one-process run uses; the loss curves nearly agree."""
    def cfg(name, processes):
        train = {"epochs": 1, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "caption_steps": 3, "caption_batch_size": 8,
                 "caption_images": 16, "progress": False, "cache_dir": str(tmp_path / name), "processes": processes}
        return MTSTConfig(model=SMALL.model_copy(update={"image_size": 32}), data={"n_triplets": 48, "image_size": 32},
                          train=train)

    two, one = train_mtst(cfg("two", 2)), train_mtst(cfg("one", 1))
    assert not two.cached and two.steps == one.steps == 6 and two.info["seed_set"]["triplets"] == 48
    assert two.run_dir.name == one.run_dir.name and (two.model_dir / "train_info.json").is_file()
    assert np.allclose(two.losses, one.losses, atol=0.05)  # each process averages its own half's tokens
