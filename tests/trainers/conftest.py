"""Fixtures: a Parquet dataset of tiny triplets, tiny model and train configs."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from pipeline.shards import rows_to_table
from tests.trainers.tinyworld import SIZE, make_rows
from trainers.config import ModelConfig, TinyConfig, TrainConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rows():
    return make_rows(8)


@pytest.fixture
def dataset_dir(tmp_path, rows):
    import datetime as dt

    d = tmp_path / "ds" / "data" / "train"
    d.mkdir(parents=True)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for part, chunk in enumerate((rows[:5], rows[5:])):
        table = rows_to_table([{**r, "created_at": now} for r in chunk], rejected=False)
        pq.write_table(table, d / f"part-{part:05d}.parquet", row_group_size=2)
    return tmp_path / "ds"


@pytest.fixture
def tiny_model_cfg():
    return ModelConfig(image_size=SIZE, tiny=TinyConfig(vision_hidden=16, qformer_hidden=16, qformer_layers=2,
                                                        num_query_tokens=2, embed_dim=8, max_text_len=16))


@pytest.fixture
def train_cfg(tmp_path, tiny_model_cfg):
    return TrainConfig.model_validate({
        "model": tiny_model_cfg.model_dump(), "out_dir": tmp_path / "run", "progress": False,
        "data": {"batch_size": 4, "max_text_len": 16}, "optim": {"lr": 3e-3, "max_steps": 4, "weight_decay": 0.0},
        "checkpoint_every": 2, "num_threads": 1,
    })
