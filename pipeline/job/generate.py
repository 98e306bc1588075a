"""The generation job as named steps: pool -> pairs -> units -> stages -> shards -> manifest.

The Prefect flow (flows/generate.py) and the CLI call these steps; they hold no stage logic.
Every step is deterministic for a config: the same config gives the same units and rows.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline import console
from pipeline.job.config import RunConfig
from pipeline.job.units import (UNIT_COLUMNS, Pair, UnitRows, cut_units, image_split, rows_of,
                                units_file, write_units)
from pipeline.pool_store import PoolStore, pool_dir
from pipeline.runtime import Runtime, StageSpec, UnitFeed
from pipeline.seeding import derive_seed
from pipeline.shards import MANIFEST, ShardWriter, atomic_write_bytes, committed_units, finalize

log = logging.getLogger(__name__)


@dataclass
class Plan:
    pool: PoolStore  # the small columns in memory, the images on disk
    pairs: list[Pair]
    units: list[list[Pair]]
    generator_id: str
    model_dir: str | None = None  # the trained text generator (prepare)
    pool_path: str | None = None  # the negatives' candidate pool file (prepare)

    @property
    def stage_counts(self) -> dict:
        return {"pool": {"seen": self.pool.seen, "kept": len(self.pool), "skipped": len(self.pool.skipped),
                         "converted": len(self.pool.converted),
                         # every converted input and what was done to it (skipped ones: the first 20)
                         "converted_inputs": dict(self.pool.converted),
                         "skipped_examples": [f"{i}: {r}" for i, r in self.pool.skipped[:20]]},
                "mining": {"pairs": len(self.pairs)}, "units": len(self.units)}


class DatasetMismatch(RuntimeError):
    """The output folder holds a dataset made from another config."""


# 1. the pool --------------------------------------------------------------------------------
def load_pool(cfg: RunConfig) -> PoolStore:
    """The pool on disk under the cache: streamed from the source once, then reopened."""
    from pipeline.sources import make_source

    return PoolStore.ensure(pool_dir(cfg.cache_dir, cfg.source, cfg.seed), lambda: make_source(cfg.source, cfg.seed))


# 2. pairs -----------------------------------------------------------------------------------
def mine_pairs(cfg: RunConfig, pool: PoolStore) -> list[Pair]:
    from pipeline.mining import mine_arrays, needs_embeddings

    emb = pool.embeddings(cfg.embedder, cfg.cache_dir) if needs_embeddings(cfg.mining) else None
    found = mine_arrays(pool.ids, pool.labels, pool.captions, emb, cfg.mining, seed=cfg.seed,
                        part_of=lambda n: image_split(cfg, pool.ids[n], pool.labels[n]))
    return [Pair(r, t, s, strategy) for r, t, s, strategy in found]


def plan(cfg: RunConfig) -> Plan:
    with console.Phase("render and mine", on=cfg.runtime.progress) as phase:
        phase.note(f"reading the {cfg.source.kind} pool")
        pool = load_pool(cfg)
        if not len(pool):
            raise ValueError(f"the image pool is empty (source.kind={cfg.source.kind!r}, "
                             f"{len(pool.skipped)} inputs skipped): give a source with readable images")
        phase.note(f"{len(pool)} images; mining pairs")
        pairs = mine_pairs(cfg, pool)
        units = cut_units(cfg, pairs)
        phase.note(f"{len(pool)} images, {len(pairs)} pairs in {len(units)} units")
    return Plan(pool=pool, pairs=pairs, units=units, generator_id=generator_id(cfg))


# 4. rows and stages -------------------------------------------------------------------------
def generator_id(cfg: RunConfig) -> str:
    from pipeline.job.chain import generator_name

    return generator_name(cfg)


def unit_rows(cfg: RunConfig, plan_: Plan, unit: int) -> list[dict]:
    """The rows a unit starts as: ids, images, provenance; stages add texts, negatives, scores."""
    pairs = plan_.units[unit]
    records = plan_.pool.fetch({i for p in pairs for i in (p.reference_id, p.target_id)})
    return rows_of(cfg, unit, pairs, records, plan_.generator_id)


def prepare(cfg: RunConfig, plan_: Plan) -> Plan:
    """What the stages need before they start: the trained text generator (cached by its config
    hash) and the candidate pool file the negatives stage mines from (under the cache folder)."""
    from generators.negatives.pool import write_pool_batches
    from generators.negatives.stage import pool_file
    from pipeline.job.chain import prepare_generator

    check_output(cfg)
    with console.Phase("generator training", on=cfg.runtime.progress) as phase:
        phase.note(f"{cfg.generator.kind}: training or loading from the cache")
        plan_.model_dir = prepare_generator(cfg)
        phase.note(f"{cfg.generator.kind}: {plan_.model_dir or 'no model to train'}")
    if cfg.negatives.enabled:
        path = Path(cfg.negatives.pool_path) if cfg.negatives.pool_path else pool_file(cfg.cache_dir, cfg.config_hash())
        if cfg.negatives.pool_path is None and not path.is_file():  # deterministic for a config: write once
            write_pool_batches(path, plan_.pool.batches(256))
        plan_.pool_path = str(path)
    return plan_


def stage_specs(cfg: RunConfig, plan_: Plan) -> list[StageSpec]:
    from pipeline.job.chain import all_stage_specs

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
    counts = {"units_total": len(plan_.units), "units_skipped": len(done), "units_written": len(todo)}
    if not todo:  # nothing to run: no stage built, no Ray started
        return {**counts, "rows_written": 0}
    for u in todo:
        writer.expect(u, len(plan_.units[u]), extra={"seed": derive_seed(cfg.seed, "unit", u)})
    # the rows are made unit by unit where they are consumed: the driver never holds the pool's images
    path = units_file(cfg)
    write_units(path, plan_.units, todo, plan_.pool)
    feed = UnitFeed(todo, UnitRows(cfg, path, todo, plan_.pool.images_bin, plan_.generator_id), UNIT_COLUMNS)
    specs = stage_specs(cfg, plan_)
    runtime = Runtime(specs, executor=executor, ray_address=cfg.runtime.ray_address,
                      num_cpus=cfg.runtime.num_cpus, batch_size=cfg.shards.batch_size)
    with console.Phase("generation", progress and cfg.runtime.progress, len(plan_.units), "units") as phase:
        phase.advance(len(done))
        phase.note(f"{len(done)} committed before" if done else "")
        written = runtime.run(feed, writer, on_commit=lambda unit, n: phase.advance(),
                              history=committed_rows(root, runtime.driver_specs))
    return {**counts, "rows_written": written}


def committed_rows(root: Path, driver_specs: list[StageSpec]):
    """The rows of committed units, unit by unit in run order (for driver stages to replay).

    Only the columns the driver stages may read (and ``reference_id``/``target_id`` to restore the
    row order of a unit) are read; nothing is read when there is no driver stage."""
    import pyarrow.parquet as pq

    from pipeline.shards import load_unit_records, shard_path

    if not driver_specs:
        return
    wanted = {"reference_id", "target_id"}
    for spec in driver_specs:
        wanted |= set(spec.columns.reads) | set(spec.columns.optional_reads)
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


def complete_manifest(cfg: RunConfig) -> dict | None:
    """The manifest of a dataset this config has finished (every unit committed), else None: a
    rerun returns it at once instead of loading the pool, mining, training and starting Ray."""
    path = cfg.dataset_dir / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("config_hash") != cfg.config_hash() or manifest.get("state") != "complete":
        return None
    return manifest if len(committed_units(cfg.dataset_dir)) == manifest.get("units_total") else None


def generate(cfg: RunConfig, executor: str = "local", progress: bool = True) -> dict:
    """The whole job in one call: plan, run, finalize. Returns the manifest."""
    done = complete_manifest(cfg)
    if done is not None:
        return done
    p = prepare(cfg, plan(cfg))
    run_units(cfg, p, executor=executor, progress=progress)
    return finalize_run(cfg, p)

