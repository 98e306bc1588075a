"""Units of work and the rows they start as, made where they are consumed.

The driver cuts the mined pairs into units and writes the units to run (their pairs and where
each image lies in the pool's ``images.bin``) to one Parquet file, a row group a unit. A unit's
rows are then made by ``UnitRows`` from that file and the pool: in-process with the local
executor, in a Ray task with the Ray executor; either way at most a unit's images are in memory
at once, never the pool's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.job.config import RunConfig
from pipeline.pool_store import PoolStore, read_records
from pipeline.schema import triplet_id
from pipeline.seeding import derive_seed, unit_float


@dataclass(frozen=True, slots=True)  # slots: a large pool has millions of pairs
class Pair:
    reference_id: str
    target_id: str
    similarity: float | None
    strategy: str


UNIT_COLUMNS = ("unit", "triplet_id", "reference_id", "target_id", "reference_image", "target_image",
                "reference_caption", "target_caption", "reference_scene", "target_scene", "mining", "scores",
                "split", "seed", "config_hash", "pipeline_version", "generator")
_LOC = ("offset", "image_size", "extra_size")
UNIT_SCHEMA = pa.schema([("reference_id", pa.string()), ("target_id", pa.string()), ("similarity", pa.float64()),
                         ("strategy", pa.string())]
                        + [(f"{side}_{c}", pa.int64()) for side in ("reference", "target") for c in _LOC])


def cut_units(cfg: RunConfig, pairs: list[Pair]) -> list[list[Pair]]:
    """Deterministic units of ``rows_per_unit`` pairs, in sorted pair order."""
    pairs = sorted(pairs, key=lambda p: (p.reference_id, p.target_id))
    n = cfg.shards.rows_per_unit
    return [pairs[i:i + n] for i in range(0, len(pairs), n)]


def image_split(cfg: RunConfig, image_id: str, label: str | None) -> str:
    """An image's split, drawn for its group: a ShapesWorld family (its label: the near-identical
    scenes of a family stay together), else the image itself (a folder is a label, not a split).
    Pairs are mined within a split, so a pair's two images and its row share it."""
    family = label if cfg.source.kind == "shapesworld" else None
    return split_of(cfg, family or image_id)


def split_of(cfg: RunConfig, group: str) -> str:
    x = unit_float(cfg.seed, "split", group)
    if x < cfg.splits.train:
        return "train"
    return "val" if x < cfg.splits.train + cfg.splits.val else "test"


def unit_row(cfg: RunConfig, unit: int, p: Pair, ref: dict, tgt: dict, generator: str, chash: str) -> dict:
    """A unit's row before the stages: ids, images, provenance (``ref``/``tgt``: pool records)."""
    return {
        "unit": unit,
        "triplet_id": triplet_id(p.reference_id, p.target_id, generator),
        "reference_id": p.reference_id, "target_id": p.target_id,
        "reference_image": ref["image"], "target_image": tgt["image"],
        "reference_caption": ref.get("caption"), "target_caption": tgt.get("caption"),
        "reference_scene": ref.get("scene"), "target_scene": tgt.get("scene"),
        "mining": p.strategy, "scores": {"image_similarity": p.similarity},
        "split": image_split(cfg, p.reference_id, ref.get("label")),
        "seed": derive_seed(cfg.seed, "unit", unit), "config_hash": chash,
        "pipeline_version": __version__, "generator": generator,
    }


def rows_of(cfg: RunConfig, unit: int, pairs: list[Pair], records: dict[str, dict], generator: str) -> list[dict]:
    chash = cfg.config_hash()
    return [unit_row(cfg, unit, p, records[p.reference_id], records[p.target_id], generator, chash) for p in pairs]


def units_file(cfg: RunConfig) -> Path:
    """The working file of the units a run has to do (under the cache, keyed by config hash)."""
    return Path(cfg.cache_dir) / "units" / f"{cfg.config_hash()}.parquet"


def write_units(path: Path, units: list[list[Pair]], todo: list[int], pool: PoolStore) -> None:
    """The ``todo`` units' pairs and image locations, one row group per unit, in ``todo`` order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with pq.ParquetWriter(tmp, UNIT_SCHEMA) as w:
        for u in todo:
            pairs = units[u]
            at = pool.locate({i for p in pairs for i in (p.reference_id, p.target_id)})
            cols = {"reference_id": [p.reference_id for p in pairs], "target_id": [p.target_id for p in pairs],
                    "similarity": [p.similarity for p in pairs], "strategy": [p.strategy for p in pairs]}
            for side in ("reference", "target"):
                for n, c in enumerate(_LOC):
                    cols[f"{side}_{c}"] = [at[getattr(p, f"{side}_id")][n] for p in pairs]
            w.write_table(pa.table(cols, schema=UNIT_SCHEMA))
    tmp.replace(path)


class UnitRows:
    """unit number -> the unit's rows, from the units file and the pool (picklable: Ray tasks
    call it; on a cluster, ``cache_dir`` must be storage every node reads)."""

    def __init__(self, cfg: RunConfig, path: Path, todo: list[int], images_bin: Path, generator: str):
        self.cfg, self.path, self.images_bin, self.generator = cfg, str(path), str(images_bin), generator
        self.group = {u: g for g, u in enumerate(todo)}

    def __call__(self, unit: int) -> list[dict]:
        t = pq.ParquetFile(self.path).read_row_group(self.group[unit]).to_pydict()
        pairs = [Pair(r, tg, s, st) for r, tg, s, st in
                 zip(t["reference_id"], t["target_id"], t["similarity"], t["strategy"])]
        at = {}
        for side in ("reference", "target"):
            at.update(zip(t[f"{side}_id"], zip(*(t[f"{side}_{c}"] for c in _LOC))))
        return rows_of(self.cfg, unit, pairs, read_records(self.images_bin, at), self.generator)
