"""The generation job as named steps: pool -> pairs -> units -> stages -> shards -> manifest.

The Prefect flow (flows/generate.py) and the CLI call these steps; they hold no stage logic.
Every step is deterministic for a config: the same config gives the same units and rows.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import __version__, console
from pipeline.config import RunConfig
from pipeline.runtime import Runtime, StageSpec
from pipeline.schema import triplet_id
from pipeline.seeding import derive_seed, unit_float
from pipeline.shards import MANIFEST, UNITS_DIR, ShardWriter, atomic_write_bytes, finalize

log = logging.getLogger(__name__)


@dataclass
class Pool:
    """The image pool: rows by id (image struct, label, caption, scene JSON) and skipped inputs."""

    rows: dict[str, dict]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seen: int = 0
    converted: list = field(default_factory=list)  # kept, normalized to RGB (CMYK, 16-bit, alpha, EXIF)


@dataclass(frozen=True)
class Pair:
    reference_id: str
    target_id: str
    similarity: float | None
    strategy: str


@dataclass
class Plan:
    pool: Pool
    pairs: list[Pair]
    units: list[list[Pair]]
    generator_id: str
    model_dir: str | None = None  # the trained text generator (prepare)
    pool_path: str | None = None  # the negatives' candidate pool file (prepare)

    @property
    def stage_counts(self) -> dict:
        return {"pool": {"seen": self.pool.seen, "kept": len(self.pool.rows), "skipped": len(self.pool.skipped),
                         "converted": len(self.pool.converted),
                         "skipped_examples": [f"{i}: {r}" for i, r in self.pool.skipped[:20]]},
                "mining": {"pairs": len(self.pairs)}, "units": len(self.units)}


class DatasetMismatch(RuntimeError):
    """The output folder holds a dataset made from another config."""


# 1. the pool --------------------------------------------------------------------------------
def load_pool(cfg: RunConfig) -> Pool:
    from pipeline.sources import make_source

    source = make_source(cfg.source, cfg.seed)
    rows = {r["image_id"]: r for r in source}
    return Pool(rows=rows, skipped=list(source.skipped), seen=len(rows) + len(source.skipped),
                converted=list(getattr(source, "converted", [])))


# 2. pairs -----------------------------------------------------------------------------------
def mine_pairs(cfg: RunConfig, pool: Pool) -> list[Pair]:
    from pipeline.mining import mine

    found = mine(pool.rows, cfg.mining, cfg.embedder, seed=cfg.seed, cache_dir=cfg.cache_dir)
    return [Pair(r, t, s, strategy) for r, t, s, strategy in found]


# 3. units -----------------------------------------------------------------------------------
def cut_units(cfg: RunConfig, pairs: list[Pair]) -> list[list[Pair]]:
    """Deterministic units of ``rows_per_unit`` pairs, in sorted pair order."""
    pairs = sorted(pairs, key=lambda p: (p.reference_id, p.target_id))
    n = cfg.shards.rows_per_unit
    return [pairs[i:i + n] for i in range(0, len(pairs), n)]


def split_of(cfg: RunConfig, group: str) -> str:
    x = unit_float(cfg.seed, "split", group)
    if x < cfg.splits.train:
        return "train"
    return "val" if x < cfg.splits.train + cfg.splits.val else "test"


def plan(cfg: RunConfig) -> Plan:
    with console.Phase("render and mine", on=cfg.runtime.progress) as phase:
        phase.note(f"reading the {cfg.source.kind} pool")
        pool = load_pool(cfg)
        if not pool.rows:
            raise ValueError(f"the image pool is empty (source.kind={cfg.source.kind!r}, "
                             f"{len(pool.skipped)} inputs skipped): give a source with readable images")
        phase.note(f"{len(pool.rows)} images; mining pairs")
        pairs = mine_pairs(cfg, pool)
        units = cut_units(cfg, pairs)
        phase.note(f"{len(pool.rows)} images, {len(pairs)} pairs in {len(units)} units")
    return Plan(pool=pool, pairs=pairs, units=units, generator_id=generator_id(cfg))


# 4. rows and stages -------------------------------------------------------------------------
def generator_id(cfg: RunConfig) -> str:
    from generators.stages import generator_name

    return generator_name(cfg)


def unit_rows(cfg: RunConfig, plan_: Plan, unit: int) -> list[dict]:
    """The rows a unit starts as: ids, images, provenance; stages add texts, negatives, scores."""
    rows = []
    chash = cfg.config_hash()
    for p in plan_.units[unit]:
        ref, tgt = plan_.pool.rows[p.reference_id], plan_.pool.rows[p.target_id]
        rows.append({
            "unit": unit,
            "triplet_id": triplet_id(p.reference_id, p.target_id, plan_.generator_id),
            "reference_id": p.reference_id, "target_id": p.target_id,
            "reference_image": ref["image"], "target_image": tgt["image"],
            "reference_caption": ref.get("caption"), "target_caption": tgt.get("caption"),
            "reference_scene": ref.get("scene"), "target_scene": tgt.get("scene"),
            "mining": p.strategy, "scores": {"image_similarity": p.similarity},
            "split": split_of(cfg, ref.get("label") or p.reference_id),
            "seed": derive_seed(cfg.seed, "unit", unit), "config_hash": chash,
            "pipeline_version": __version__, "generator": plan_.generator_id,
        })
    return rows


def prepare(cfg: RunConfig, plan_: Plan) -> Plan:
    """What the stages need before they start: the trained text generator (cached by its config
    hash) and the candidate pool file the negatives stage mines from (under the dataset folder)."""
    from generators.negatives import pool_file, write_pool
    from generators.stages import prepare_generator

    check_output(cfg)
    with console.Phase("generator training", on=cfg.runtime.progress) as phase:
        phase.note(f"{cfg.generator.kind}: training or loading from the cache")
        plan_.model_dir = prepare_generator(cfg)
        phase.note(f"{cfg.generator.kind}: {plan_.model_dir or 'no model to train'}")
    if cfg.negatives.enabled:
        path = Path(cfg.negatives.pool_path) if cfg.negatives.pool_path else pool_file(cfg.dataset_dir)
        if cfg.negatives.pool_path is None and not path.is_file():  # deterministic for a config: write once
            write_pool(path, plan_.pool.rows.values())
        plan_.pool_path = str(path)
    return plan_


def stage_specs(cfg: RunConfig, plan_: Plan) -> list[StageSpec]:
    from generators.stages import all_stage_specs

    return all_stage_specs(cfg, plan_.model_dir, plan_.pool_path)


# 5. run -------------------------------------------------------------------------------------
def check_output(cfg: RunConfig) -> None:
    """Refuse to mix rows of two configs in one dataset folder."""
    manifest = cfg.dataset_dir / MANIFEST
    marker = cfg.dataset_dir / "config.json"
    for f in (manifest, marker):
        if f.is_file():
            old = json.loads(f.read_text()).get("config_hash")
            if old and old != cfg.config_hash():
                raise DatasetMismatch(
                    f"{cfg.dataset_dir} holds a dataset from config {old}, this config is {cfg.config_hash()}: "
                    "choose another `name` or `out_dir`, or delete the folder to start over")


def run_units(cfg: RunConfig, plan_: Plan, executor: str = "local", progress: bool = True) -> dict:
    """Run the stages over every uncommitted unit; returns counts of this call."""
    check_output(cfg)
    root = cfg.dataset_dir
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "config.json", json.dumps(
        {"config_hash": cfg.config_hash(), "config": cfg.model_dump(mode="json")}, indent=1).encode())
    writer = ShardWriter(root, row_group_size=cfg.shards.row_group_size, compression=cfg.shards.compression,
                         embed_images=cfg.shards.embed_images)
    done = writer.committed_units()
    todo = [u for u in range(len(plan_.units)) if u not in done]
    rows = []
    for u in todo:
        r = unit_rows(cfg, plan_, u)
        writer.expect(u, len(r), extra={"seed": derive_seed(cfg.seed, "unit", u)})
        rows.extend(r)
    specs = stage_specs(cfg, plan_)
    runtime = Runtime(specs, executor=executor, ray_address=cfg.runtime.ray_address,
                      num_cpus=cfg.runtime.num_cpus, batch_size=cfg.shards.batch_size)
    with console.Phase("generation", progress and cfg.runtime.progress, len(plan_.units), "units") as phase:
        phase.advance(len(done))
        phase.note(f"{len(done)} committed before" if done else "")
        written = runtime.run(rows, writer, on_commit=lambda unit, n: phase.advance(),
                              history=committed_rows(root, runtime.driver_specs))
    return {"units_total": len(plan_.units), "units_skipped": len(done), "units_written": len(todo),
            "rows_written": written}


def committed_rows(root: Path, driver_specs: list[StageSpec]):
    """The rows of committed units, unit by unit in run order (for driver stages to replay).

    Only the columns the driver stages read (and ``reference_id``/``target_id`` to restore the
    row order of a unit) are read; nothing is read when there is no driver stage."""
    import pyarrow.parquet as pq

    from pipeline.shards import load_unit_records, shard_path

    if not driver_specs:
        return
    wanted = {"reference_id", "target_id"}
    for spec in driver_specs:
        wanted |= set(spec.cls.reads) | set(getattr(spec.cls, "replay_reads", ()))
    for record in load_unit_records(root):
        rows = []
        for shard in record.get("shards", []):
            path = shard_path(root, shard["path"])
            cols = [c for c in pq.read_schema(path).names if c in wanted]
            rows += pq.read_table(path, columns=cols).to_pylist()
        yield sorted(rows, key=lambda r: (r["reference_id"], r["target_id"]))


# 6. finalize --------------------------------------------------------------------------------
def finalize_run(cfg: RunConfig, plan_: Plan) -> dict:
    """Manifest (from committed units) and dataset card."""
    from pipeline.card import write_card

    manifest = finalize(cfg.dataset_dir, cfg.model_dump(mode="json"), cfg.config_hash(),
                        units_total=len(plan_.units), stage_counts=plan_.stage_counts)
    write_card(cfg.dataset_dir, manifest)
    return manifest


def generate(cfg: RunConfig, executor: str = "local", progress: bool = True) -> dict:
    """The whole job in one call: plan, run, finalize. Returns the manifest."""
    p = prepare(cfg, plan(cfg))
    run_units(cfg, p, executor=executor, progress=progress)
    return finalize_run(cfg, p)


def committed_unit_count(root: Path) -> int:
    return len(list((Path(root) / UNITS_DIR).glob("unit-*.json")))
