"""The runtime: the same stages in-process and on Ray give the same shards."""
import pyarrow.dataset as pads
import pytest

from pipeline.runtime import Runtime, StageSpec, check_chain
from pipeline.shards import ShardWriter
from pipeline.stage import Stage, to_list
from tests.pipeline.rows import row


class Shout(Stage):
    """Upper-cases the text and rejects every fifth row (a stand-in for a text filter)."""

    name = "shout"
    reads = ("modification_text",)
    writes = ("modification_text",)
    batch_size = 7

    def process(self, batch):
        texts = to_list(batch["modification_text"])
        batch["modification_text"] = [t.upper() for t in texts]
        for i, t in enumerate(texts):
            if int(t.split()[-1]) % 5 == 0:
                self.reject(batch, i, "every_fifth")
        return batch


class Stateless(Shout):
    name = "stateless"
    writes = ()
    stateful = False

    def process(self, batch):
        return batch


def rows():
    return [{k: v for k, v in row(u, i).items() if k != "created_at"} for u in range(3) for i in range(10)]


def run(tmp_path, executor):
    w = ShardWriter(tmp_path)
    for u in range(3):
        w.expect(u, 10)
    committed = []
    n = Runtime([StageSpec(Shout), StageSpec(Stateless)], executor=executor, num_cpus=2, batch_size=4).run(
        rows(), w, on_commit=lambda u, n: committed.append(u))
    assert n == 30 and sorted(committed) == [0, 1, 2]
    t = pads.dataset(tmp_path / "data", format="parquet").to_table().sort_by("triplet_id")
    r = pads.dataset(tmp_path / "rejected", format="parquet").to_table().sort_by("triplet_id")
    return t.drop(["created_at"]), r.drop(["created_at"])


def test_local_and_ray_write_the_same_rows(tmp_path, ray_local):
    kept_local, rej_local = run(tmp_path / "local", "local")
    kept_ray, rej_ray = run(tmp_path / "ray", "ray")
    assert kept_local.num_rows == 24 and rej_local.num_rows == 6
    assert kept_local.equals(kept_ray) and rej_local.equals(rej_ray)
    assert set(kept_local.column("modification_text").to_pylist()) >= {"MAKE IT 1"}


def test_chain_check_names_the_missing_column():
    class NeedsNegatives(Stage):
        name = "needs"
        reads = ("neg_text_aligned_image",)

    with pytest.raises(ValueError, match="neg_text_aligned_image"):
        check_chain([StageSpec(NeedsNegatives)], ["reference_image"])


class Count(Stage):
    """A driver stage: rejects every row after the third, counting rows it replayed too."""

    name = "count"
    reads = ("modification_text",)
    driver = True

    def __init__(self):
        self.seen = 0

    def replay(self, rows):
        self.seen += len(rows)

    def process(self, batch):
        for i in range(len(batch["modification_text"])):
            self.seen += 1
            if self.seen > 3:
                self.reject(batch, i, "after_third")
        return batch


def test_driver_stages_run_last_in_the_driver_and_replay_history(tmp_path):
    with pytest.raises(ValueError, match="driver stages must be last"):
        Runtime([StageSpec(Count), StageSpec(Shout)])
    rows = [row(0, i) for i in range(1, 4)]
    writer = ShardWriter(tmp_path)
    writer.expect(0, 3)
    # two rows were committed before: the third new row is the fifth in run order
    Runtime([StageSpec(Shout), StageSpec(Count)]).run(rows, writer, history=[[{}, {}]])
    got = pads.dataset(tmp_path / "rejected", format="parquet").to_table().to_pylist()
    assert sorted(r for g in got for r in g["reject_reasons"] if r.startswith("count")) == ["count:after_third"] * 2


def test_missing_cells_are_missing_however_the_executor_spells_them():
    import numpy as np
    import pandas as pd

    from generators.annotator_stage import AnnotatorTextStage
    from pipeline.stage import missing, nulls

    assert all(missing(v) for v in (None, float("nan"), np.float32("nan"), pd.NA, pd.NaT))
    assert not any(missing(v) for v in ("", 0, 0.0, "{}", []))
    # Ray Data hands an all-None column over as float NaN: a stage sees None again
    nan = np.full(2, np.nan, np.float32)
    assert nulls(nan) == [None, None] and nulls(np.array([1.0, np.nan])).tolist()[0] == 1.0
    out = AnnotatorTextStage()({"triplet_id": np.array(["a", "b"], object), "reference_scene": nan,
                                "target_scene": nan})
    assert out["reject_reasons"] == [["annotator:no_scene_graph"]] * 2
