"""The training flow end to end (Prefect's local ephemeral mode): pretrain, finetune, evaluate, artifacts."""
import datetime as dt
import json

import pyarrow.parquet as pq

from flows.train import train_flow
from pipeline.shards import rows_to_table
from tests.trainers.tinyworld import SIZE, make_rows

TINY = {"image_size": SIZE, "tiny": {"vision_hidden": 16, "qformer_hidden": 16, "num_query_tokens": 2,
                                     "embed_dim": 8, "max_text_len": 16}}


def write_dataset(root, rows, split="train"):
    d = root / "data" / split
    d.mkdir(parents=True)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    pq.write_table(rows_to_table([{**r, "created_at": now} for r in rows], rejected=False), d / "part-00000.parquet")
    return root


def test_train_flow_pretrains_finetunes_evaluates_and_publishes(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    rows = make_rows(8)
    shards = write_dataset(tmp_path / "shards", rows)
    seeds = write_dataset(tmp_path / "seeds", rows[:4])
    phase = {"model": TINY, "progress": False, "num_threads": 1, "data": {"batch_size": 4, "max_text_len": 16},
             "optim": {"max_steps": 2}}
    out = train_flow(str(shards), out_dir=str(tmp_path / "run"), overrides={
        "pretrain": phase, "finetune": phase, "finetune_dir": str(seeds),
        "benchmark_split": "train", "eval": {"max_text_len": 16}})
    assert out["model_dir"].endswith("finetune/model")
    m = out["metrics"]
    assert m["n_queries"] == 8 and 0 <= m["R@1"] <= m["R@5"] <= 100 and "hard_R@1" in m
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == m
    assert (tmp_path / "run" / "pretrain" / "model" / "model.safetensors").is_file()

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts()}
    assert {"cirforge-train-metrics", "cirforge-train-summary"} <= keys
