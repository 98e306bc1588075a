"""The reproduction table's data, each built once and cached under ``out_dir`` by config hash: the
synthetic shards (the real pipeline), the annotated seed set and the held-out benchmark (ShapesWorld
sets of pipeline/shapesworld/sets/retrieval.py; the benchmark excludes every image of the other two).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline.config_base import deep_merge
from trainers.reproduce.config import ReproduceConfig, cache_key, default_synthetic

log = logging.getLogger(__name__)


def synthetic_run_config(cfg: ReproduceConfig, oracle: bool = False):
    """The pipeline run config of the synthetic shards (``oracle``: with annotator texts), under ``out_dir/synthetic``."""
    from pipeline.job.config import parse_config

    data = deep_merge(default_synthetic(oracle), json.loads(json.dumps(cfg.synthetic)))
    if oracle:  # the same shards as the generator's row, texts by the annotator
        data["generator"] = {"kind": "annotator"}
    data.setdefault("out_dir", str(cfg.out_dir / "synthetic"))
    data.setdefault("cache_dir", str(cfg.out_dir / "synthetic-cache"))
    data.setdefault("runtime", {})["progress"] = False
    if data.get("source", {}).get("kind", "shapesworld") == "shapesworld":
        data.setdefault("source", {}).setdefault("shapesworld", {})["image_size"] = cfg.image_size
    return parse_config(data, "reproduce.synthetic")


def ensure_synthetic(cfg: ReproduceConfig, oracle: bool = False) -> Path:
    """Generate the synthetic shards with the real pipeline (resumed / skipped when already complete)."""
    from pipeline.job.generate import generate
    from pipeline.shards import load_manifest

    run = synthetic_run_config(cfg, oracle)
    try:
        if load_manifest(run.dataset_dir).get("state") == "complete":
            return run.dataset_dir
    except (FileNotFoundError, OSError, ValueError):
        pass
    log.info("generating the synthetic shards (%s)", run.dataset_dir)
    generate(run, executor="local", progress=False)
    return run.dataset_dir


def decoded(rows: list[dict], image_size: int, root: Path | None = None) -> list[dict]:
    """Rows with their images as normalized pixel tensors: a small in-memory set is decoded once, not
    at every step (PNG decoding is about 40% of a tiny model's step)."""
    from trainers.data import NEGATIVE_COLUMNS, decode_image, image_to_tensor

    cols = ("reference_image", "target_image", *NEGATIVE_COLUMNS)
    return [{**r, **{c: image_to_tensor(decode_image(r[c], root), image_size) for c in cols if r.get(c) is not None}}
            for r in rows]


def synthetic_rows(synthetic_dir: Path, image_size: int) -> list[dict]:
    """The shards' train rows decoded into memory (a few thousand 64 px triplets: ~0.5 GB with negatives).

    Streaming them decoded PNGs at every step, which made a pretraining step several times slower than
    the model's own forward and backward on a 2-core machine."""
    from trainers.data import TRAIN_COLUMNS, ParquetTriplets

    source = ParquetTriplets(synthetic_dir, "train", columns=TRAIN_COLUMNS)
    return decoded(list(source.rows()), image_size, source.root)


def seed_set_key(cfg: ReproduceConfig) -> str:
    """The seed set's cache key (its file name; the benchmark's key includes it)."""
    return cache_key({"seed_set": cfg.seed_set.model_dump(), "size": cfg.image_size})


def ensure_seed_set(cfg: ReproduceConfig) -> Path:
    """The annotated seed set (ShapesWorld triplets with exact negatives) as one Parquet file."""
    from pipeline.shapesworld.sets.retrieval import shapesworld_triplets
    from trainers.data import write_rows

    path = cfg.out_dir / "sets" / f"seed-{seed_set_key(cfg)}.parquet"
    if not path.exists():
        s = cfg.seed_set
        write_rows(shapesworld_triplets(s.n_triplets, 1, seed=s.seed, image_size=cfg.image_size,
                                         max_edits=s.max_edits), path)
    return path


def ensure_benchmark(cfg: ReproduceConfig, seed_path: Path, synthetic_dirs: list[Path]) -> Path:
    """The held-out benchmark (full hard galleries), drawn around every image of the seed set and of each
    synthetic set (the generator's and the oracle's: the same families, filtered by different texts)."""
    from pipeline.shapesworld.sets.retrieval import shapesworld_triplets
    from trainers.data import training_images, write_rows

    b = cfg.benchmark
    key = cache_key({"bench": b.model_dump(exclude={"focus_queries", "focus_grid"}), "size": cfg.image_size,
                     "seed_set": seed_set_key(cfg), "synthetic": synthetic_run_config(cfg).config_hash(),
                     "oracle": synthetic_run_config(cfg, oracle=True).config_hash()})
    path = cfg.out_dir / "sets" / f"bench-{key}.parquet"
    if not path.exists():
        seen = training_images(seed_path, synthetic_dirs[0], cfg.image_size)
        for other in synthetic_dirs[1:]:
            more = training_images(None, other, cfg.image_size)
            seen.ids |= more.ids
            seen.digests |= more.digests
        rows = shapesworld_triplets(b.references, b.targets_per_reference, seed=b.seed, image_size=cfg.image_size,
                                    max_edits=b.max_edits, require_negatives=True, exclude=seen, split="test")
        write_rows(rows, path)
    return path


def _shard_facts(synthetic_dir: Path, prefix: str) -> dict:
    import pyarrow.dataset as pads

    train = pads.dataset(synthetic_dir / "data" / "train", format="parquet").to_table(
        columns=["neg_text_aligned_image", "generator"])
    return {f"{prefix}_train_rows": train.num_rows,
            f"{prefix}_rows_with_negatives": train.num_rows - train.column("neg_text_aligned_image").null_count,
            f"{prefix}_generator": sorted(set(train.column("generator").to_pylist()))}


def data_facts(synthetic_dir: Path, seed_path: Path, bench_path: Path, oracle_dir: Path | None = None) -> dict:
    """Row counts of the synthetic shards, the seed set and the benchmark, for the results and the doc."""
    from trainers.data import read_rows

    bench = read_rows(bench_path)
    return {
        **_shard_facts(synthetic_dir, "synthetic"),
        **(_shard_facts(oracle_dir, "oracle") if oracle_dir is not None else {}),
        "seed_set_rows": len(read_rows(seed_path)),
        "benchmark_queries": len(bench),
        "benchmark_gallery": len({r["reference_id"] for r in bench} | {r["target_id"] for r in bench}),
    }


def caption_rows(cfg: ReproduceConfig, size: int) -> list[dict]:
    """The caption stage's rows: one rendered scene as reference and target, its caption as the text."""
    from PIL import Image

    from pipeline.shapesworld.sets.mtst import shapesworld_captions
    from trainers.data import image_to_tensor

    c = cfg.captions
    images, captions = shapesworld_captions(c.images, seed=c.seed, image_size=cfg.image_size)
    rows = []
    for i, (arr, text) in enumerate(zip(images, captions)):
        pixels = image_to_tensor(Image.fromarray(arr), size)
        rows.append({"triplet_id": f"caption-{i}", "reference_id": f"caption-{i}", "target_id": f"caption-{i}",
                     "reference_image": pixels, "target_image": pixels, "modification_text": text})
    return rows
