"""The runtime: the same stages in-process and on Ray give the same shards."""
import numpy as np
import pyarrow.dataset as pads
import pytest

from pipeline.runtime import Runtime, StageSpec, _columns, check_chain
from pipeline.shards import ShardWriter, finalize
from pipeline.stage import REJECT_COLUMN, Columns, Stage, to_list
from tests.flows.small import small_config
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
    counts = finalize(tmp_path, {}, "h", units_total=3)["stage_counts"]
    return t.drop(["created_at"]), r.drop(["created_at"]), counts


def test_local_and_ray_write_the_same_rows_and_counts(tmp_path, ray_local):
    kept_local, rej_local, counts_local = run(tmp_path / "local", "local")
    kept_ray, rej_ray, counts_ray = run(tmp_path / "ray", "ray")
    assert kept_local.num_rows == 24 and rej_local.num_rows == 6
    assert kept_local.equals(kept_ray) and rej_local.equals(rej_ray)
    assert counts_local == counts_ray == {
        "shout": {"in": 30, "out": 24, "rejected": 6, "reasons": {"every_fifth": 6}},
        "stateless": {"in": 24, "out": 24, "rejected": 0, "reasons": {}}}
    assert set(kept_local.column("modification_text").to_pylist()) >= {"MAKE IT 1"}


def test_chain_check_names_the_missing_column():
    class NeedsNegatives(Stage):
        name = "needs"
        reads = ("neg_text_aligned_image",)

    with pytest.raises(ValueError, match="neg_text_aligned_image"):
        check_chain([StageSpec(NeedsNegatives)], ["reference_image"])


class Pick(Stage):
    """Reads the column its argument names: declared per instance, and per spec without building it."""

    name = "pick"

    def __init__(self, column):
        self.reads = self.declared_columns({"column": column}).reads

    @classmethod
    def declared_columns(cls, kwargs):
        return Columns((kwargs["column"],), (), ())

    def process(self, batch):
        return batch


def test_chain_check_reads_each_specs_own_declaration():
    check_chain([StageSpec(Pick, {"column": "x"})], ["x"])
    with pytest.raises(ValueError, match=r"'pick' reads \['y'\]"):
        check_chain([StageSpec(Pick, {"column": "y"})], ["x"])
    with pytest.raises(KeyError, match="needs columns"):
        Pick("y")({"x": [1]})


def run_declared_only(specs, rows):
    """Run a chain on ``rows``; at each stage, a second instance sees only the columns the stage
    declares (reads, optional reads, reject_reasons) and must write the same. Returns the output."""
    batch = _columns(rows)
    check_chain(specs, batch)
    for spec in specs:
        cols = spec.columns
        seen = {*cols.reads, *cols.optional_reads, REJECT_COLUMN}
        full = spec.build()(batch)
        part = spec.build()({k: v for k, v in batch.items() if k in seen})
        for c in (*cols.writes, REJECT_COLUMN):
            np.testing.assert_equal(part[c], full[c], err_msg=f"stage {spec.cls.name!r}, column {c!r}")
        batch = full
    return batch


def test_demo_chain_stages_read_only_what_they_declare(tmp_path):
    """The demo's chain (ShapesWorld, exact negatives and filters) with the annotator's texts; the
    MTST text stage is run on its declared columns alone in tests/generators/test_text_stage.py."""
    from generators.negatives.stage import write_pool
    from pipeline.job.chain import all_stage_specs
    from pipeline.job import generate
    from pipeline.job.config import load_config

    cfg = load_config(small_config(tmp_path, families=8, negatives={"editor": "shapesworld"}))
    plan = generate.plan(cfg)
    pool = write_pool(tmp_path / "pool.parquet", (r for b in plan.pool.batches(64) for r in b))
    specs = all_stage_specs(cfg, None, pool)
    assert [s.cls.name for s in specs] == ["annotator", "negatives", "text_sanity", "roundtrip",
                                           "text_image_consistency", "clip_direction", "image_similarity", "duplicates"]
    rows = generate.unit_rows(cfg, plan, 0)
    rows[1]["target_scene"] = None  # rejected rows flow on: no scene graph, then a pair seen twice
    rows.append({**rows[0], "triplet_id": "again"})
    out = run_declared_only(specs, rows)
    assert out[REJECT_COLUMN][1][0] == "annotator:no_scene_graph" and out[REJECT_COLUMN][-1] == ["duplicates:same_pair"]
    assert not any(out[REJECT_COLUMN][2:-1])


def test_photo_chain_stages_read_only_what_they_declare(tmp_path):
    """Photos: negatives mined by CLIP margins, the embed stage, the embedding filters."""
    from filters.config import FiltersConfig
    from filters.specs import filter_stage_specs
    from generators.negatives.stage import NegativesStage, write_pool
    from tests.generators.test_negatives import FAR, IMAGE_NEG, TEXT, TEXT_NEG, PixelEmbedder, R, T, vec_image

    emb = PixelEmbedder({"add green": TEXT, "remove green": [0, -1, 0]})
    images = {"r": R, "t": T, "c": TEXT_NEG, "m": IMAGE_NEG, "far": FAR}
    pool = write_pool(tmp_path / "pool.parquet", [{"image_id": k, "image": vec_image(v)} for k, v in images.items()])
    specs = [StageSpec(NegativesStage, {"pool_path": str(pool), "config": {"editor": "none"}, "embedder": emb})]
    specs += filter_stage_specs(FiltersConfig(), embedder=emb)
    rows = [{**row(0, i), "reference_id": "r", "target_id": tgt, "reference_image": vec_image(R),
             "target_image": vec_image(v), "modification_text": "add green", "reverse_text": "remove green",
             "reference_scene": None, "target_scene": None, "scores": {"image_similarity": 0.6}}
            for i, (tgt, v) in enumerate((("t", T), ("far", FAR)))]
    out = run_declared_only(specs, rows)
    assert out[REJECT_COLUMN][0] == [] and out[REJECT_COLUMN][1]
    assert out["scores"][0]["clip_direction"] > 0.5


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
