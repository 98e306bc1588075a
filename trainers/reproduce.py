"""The reproduction table on ShapesWorld, from one command: ``python -m trainers.reproduce``.

Rows (each adds to the one above, DetailFusion takes everything):

1. seed set only          - finetune on the annotated seed set (L_q2t + L_t2t), from scratch;
2. + synthetic pretraining - first pretrain on pipeline-generated shards (``pipeline.generate``);
3. + PTHA reverse         - L_p2p with the reverse text, in both phases;
4. + FBCIR negatives      - each row's two FBCIR negatives in the contrastive denominator;
5. DetailFusion           - the dual-branch model, its 3 stages (DI; DI+GM; compositor), the
                            reference as a hard negative, plus the FBCIR negatives.

Columns: R@1, R@5 (reference removed from the gallery), Rs@1 (the reference's group), hard-case R@1
(target vs its 2 FBCIR negatives and the reference) and the focus imbalance index, as mean ± std over
the training seeds, on a ShapesWorld benchmark drawn from its own seed that shares no image with the
seed set or the synthetic shards (checked by image id and by image bytes).

Everything is cached under ``out_dir`` by config hash (the synthetic dataset, the seed set, the
benchmark, each trained phase and each evaluation): a rerun of the same config only reads.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.config_base import Section, deep_merge, load_section, parse_overrides
from trainers.config import EvalConfig, ModelConfig, TrainConfig

log = logging.getLogger(__name__)

DOC_BEGIN = "<!-- reproduce:begin -->"
DOC_END = "<!-- reproduce:end -->"
COLUMNS = (("R@1", "R@1"), ("R@5", "R@5"), ("Rs@1", "subset R@1"), ("hard_R@1", "hard-case R@1"),
           ("focus_imbalance", "focus imbalance"))


class SeedSetSpec(Section):
    """The annotated seed set: ShapesWorld pairs with annotator texts and exact FBCIR negatives."""

    n_triplets: int = Field(300, ge=1, description="annotated triplets (one target per reference)")
    seed: int = Field(1000, description="ShapesWorld seed of the seed set")
    max_edits: int = Field(2, ge=1, le=2, description="edits between reference and target: 1 to this many")


class BenchmarkSpec(Section):
    """The held-out ShapesWorld benchmark (its own seed; no image shared with any training data)."""

    references: int = Field(100, ge=1, description="reference images; each heads a group of targets")
    targets_per_reference: int = Field(4, ge=1, description="queries per reference (its group for Rs@K)")
    seed: int = Field(9000, description="ShapesWorld seed of the benchmark (differs from every training seed)")
    max_edits: int = Field(2, ge=1, le=2)
    focus_queries: int = Field(40, ge=1, description="queries the focus diagnosis occludes")
    focus_grid: int = Field(4, ge=1, description="occlusion grid side (grid x grid patches)")


class PhaseSpec(Section):
    """One training phase's length and optimizer."""

    steps: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(32, ge=2)


def _default_synthetic() -> dict:
    # ShapesWorld families, label mining (pairs inside a family: 1-2 edits apart), annotator texts
    # (exact; the MTST generator is `generator.kind: mtst`, which trains it first), exact ShapesWorld
    # FBCIR negatives, the exact round-trip filter. No CLIP is needed: near-duplicate removal and the
    # CLIP filters are off (distinct scenes are never duplicates, annotator texts are exact).
    return {
        "name": "reproduce-synthetic", "seed": 2000,
        "source": {"kind": "shapesworld", "shapesworld": {"image_size": 64, "families": 300, "variants_per_family": 4}},
        "embedder": {"tiny": {"steps": 10, "families": 10, "batch_size": 32}},
        "mining": {"strategies": ["label"], "k": 4, "near_dup": 1.0},
        "generator": {"kind": "annotator"},
        "negatives": {"editor": "shapesworld"},
        "filters": {"clip_direction": {"enabled": False}, "image_similarity": {"enabled": False},
                    "text_image_consistency": {"enabled": False}},
        "shards": {"rows_per_unit": 256},
    }


class ReproduceConfig(Section):
    """Everything the table depends on; its parts hash into the cache keys."""

    out_dir: Path = Field(Path("cache/reproduce"), description="cache of data, models and evaluations")
    train_seeds: list[int] = Field([0, 1, 2], min_length=1, description="one full training per seed and row")
    image_size: int = Field(64, ge=16)
    seed_set: SeedSetSpec = SeedSetSpec()
    synthetic: dict[str, Any] = Field(default_factory=dict, description="run config keys of the synthetic "
                                      "shards (pipeline.config.RunConfig), merged over the built-in ones")
    benchmark: BenchmarkSpec = BenchmarkSpec()
    model: ModelConfig = ModelConfig()
    pretrain: PhaseSpec = PhaseSpec(steps=200)
    finetune: PhaseSpec = PhaseSpec(steps=100)
    p2p: float = Field(0.5, gt=0, description="alpha of L_p2p in the PTHA rows")
    workers: int = Field(2, ge=1, description="trainings run in parallel processes")
    threads_per_worker: int = Field(1, ge=1, description="torch threads per process (1 is fastest for tiny models)")


@dataclass(frozen=True)
class RowSpec:
    name: str
    pretrain: bool
    p2p: bool
    fbcir: bool
    kind: str = "qformer_cir"


ROWS = (
    RowSpec("seed set only", pretrain=False, p2p=False, fbcir=False),
    RowSpec("+ synthetic pretraining", pretrain=True, p2p=False, fbcir=False),
    RowSpec("+ PTHA reverse", pretrain=True, p2p=True, fbcir=False),
    RowSpec("+ FBCIR negatives", pretrain=True, p2p=True, fbcir=True),
    RowSpec("DetailFusion", pretrain=True, p2p=False, fbcir=True, kind="detailfusion"),
)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- data ---------------------------------------------------------------------------------------------
def synthetic_run_config(cfg: ReproduceConfig):
    """The pipeline run config of the synthetic shards, written under ``out_dir/synthetic``."""
    from pipeline.config import parse_config

    data = deep_merge(_default_synthetic(), json.loads(json.dumps(cfg.synthetic)))
    data.setdefault("out_dir", str(cfg.out_dir / "synthetic"))
    data.setdefault("cache_dir", str(cfg.out_dir / "synthetic-cache"))
    data.setdefault("runtime", {})["progress"] = False
    if data.get("source", {}).get("kind", "shapesworld") == "shapesworld":
        data.setdefault("source", {}).setdefault("shapesworld", {})["image_size"] = cfg.image_size
    return parse_config(data, "reproduce.synthetic")


def ensure_synthetic(cfg: ReproduceConfig) -> Path:
    """Generate the synthetic shards with the real pipeline (resumed / skipped when already complete)."""
    from pipeline.generate import generate
    from pipeline.shards import load_manifest

    run = synthetic_run_config(cfg)
    try:
        if load_manifest(run.dataset_dir).get("state") == "complete":
            return run.dataset_dir
    except (FileNotFoundError, OSError, ValueError):
        pass
    log.info("generating the synthetic shards (%s)", run.dataset_dir)
    generate(run, executor="local", progress=False)
    return run.dataset_dir


def decoded(rows: list[dict], image_size: int) -> list[dict]:
    """Rows with their images as normalized pixel tensors: a small in-memory set is decoded once, not
    at every step (PNG decoding is about 40% of a tiny model's step)."""
    from trainers.data import NEGATIVE_COLUMNS, decode_image, image_to_tensor

    cols = ("reference_image", "target_image", *NEGATIVE_COLUMNS)
    return [{**r, **{c: image_to_tensor(decode_image(r[c]), image_size) for c in cols if r.get(c) is not None}}
            for r in rows]


def _seed_set_key(cfg: ReproduceConfig) -> str:
    return _hash({"seed_set": cfg.seed_set.model_dump(), "size": cfg.image_size})


def ensure_seed_set(cfg: ReproduceConfig) -> Path:
    from trainers.data import write_rows
    from pipeline.shapesworld.sets.retrieval import shapesworld_triplets

    path = cfg.out_dir / "sets" / f"seed-{_seed_set_key(cfg)}.parquet"
    if not path.exists():
        s = cfg.seed_set
        write_rows(shapesworld_triplets(s.n_triplets, 1, seed=s.seed, image_size=cfg.image_size,
                                         max_edits=s.max_edits), path)
    return path


def ensure_benchmark(cfg: ReproduceConfig, seed_path: Path, synthetic_dir: Path) -> Path:
    from pipeline.shapesworld.sets.retrieval import shapesworld_triplets
    from trainers.data import training_images, write_rows

    b = cfg.benchmark
    key = _hash({"bench": b.model_dump(exclude={"focus_queries", "focus_grid"}), "size": cfg.image_size,
                 "seed_set": _seed_set_key(cfg), "synthetic": synthetic_run_config(cfg).config_hash()})
    path = cfg.out_dir / "sets" / f"bench-{key}.parquet"
    if not path.exists():
        seen = training_images(seed_path, synthetic_dir, cfg.image_size)
        rows = shapesworld_triplets(b.references, b.targets_per_reference, seed=b.seed, image_size=cfg.image_size,
                                    max_edits=b.max_edits, require_negatives=True, exclude=seen, split="test")
        write_rows(rows, path)
    return path


# -- training -----------------------------------------------------------------------------------------
def _phase_configs(cfg: ReproduceConfig, row: RowSpec, seed: int, phase: str) -> list[TrainConfig]:
    """The TrainConfigs of one phase (DetailFusion: two stages per phase); out_dir set by the caller."""
    spec = cfg.pretrain if phase == "pretrain" else cfg.finetune
    model = cfg.model.model_copy(update={"kind": row.kind, "image_size": cfg.image_size})
    loss = {"p2p": cfg.p2p if row.p2p else 0.0, "fbcir": row.fbcir}
    if row.kind == "detailfusion":
        stages = ("df_di", "df_joint") if phase == "pretrain" else ("df_joint", "df_compositor")
        steps = (spec.steps // 2, spec.steps - spec.steps // 2)
    else:
        stages, steps = ("ptha",), (spec.steps,)
    return [TrainConfig.model_validate({
        "model": model.model_dump(), "loss": loss, "stage": stage, "seed": seed,
        "data": {"batch_size": spec.batch_size}, "optim": {"lr": spec.lr, "max_steps": n, "weight_decay": 0.0},
        "checkpoint_every": 50, "progress": False, "num_threads": cfg.threads_per_worker, "device": "cpu",
    }) for stage, n in zip(stages, steps) if n > 0]


def _key_of(tc: TrainConfig) -> dict:
    return tc.model_dump(mode="json", exclude={"out_dir", "init_from", "progress", "resume", "num_threads", "device"})


DONE = "done.json"


def _run_phase(tc: TrainConfig, data, data_key: str, init: tuple[Path, str] | None, root: Path) -> tuple[Path, str]:
    """Train one stage unless its folder says it is done; returns (model folder, cache key)."""
    from trainers.loop import finetune, pretrain

    key = _hash({"train": _key_of(tc), "data": data_key, "init": init[1] if init else None})
    out = root / "runs" / key
    if (out / DONE).exists():
        return out / "model", key
    tc = tc.model_copy(update={"out_dir": out, "init_from": init[0] if init else None})
    t0 = time.perf_counter()
    result = pretrain(data, tc) if isinstance(data, Path) else finetune(data, tc)
    (out / DONE).write_text(json.dumps({"seconds": time.perf_counter() - t0, "final": result.history[-1]}))
    return result.model_dir, key


def train_row(cfg: ReproduceConfig, row: RowSpec, seed: int, synthetic_dir: Path, seed_rows: list[dict],
              synthetic_key: str, seed_key: str) -> tuple[Path, str]:
    """Pretrain (when the row does) then finetune; returns the final model folder and its key."""
    init = None
    if row.pretrain:
        for tc in _phase_configs(cfg, row, seed, "pretrain"):
            init = _run_phase(tc, synthetic_dir, synthetic_key, init, cfg.out_dir)
    for tc in _phase_configs(cfg, row, seed, "finetune"):
        init = _run_phase(tc, seed_rows, seed_key, init, cfg.out_dir)
    return init


# -- evaluation ---------------------------------------------------------------------------------------
def evaluate_model(model_dir: Path, bench_rows: list[dict], spec: BenchmarkSpec) -> dict[str, float]:
    """Retrieval metrics on the benchmark and the FBCIR focus diagnosis on its first queries."""
    from trainers.evaluate import benchmark_from_rows, evaluate
    from trainers.factory import load_model
    from trainers.focus import focus_diagnosis

    model = load_model(model_dir)
    metrics = evaluate(model, benchmark_from_rows(bench_rows, "shapesworld-bench"), EvalConfig(batch_size=64))
    focus = focus_diagnosis(model, bench_rows[: spec.focus_queries], grid=spec.focus_grid)
    metrics.update({"focus_imbalance": focus.imbalance, "focus_image_share": focus.image_share,
                    "focus_text_share": focus.text_share})
    return metrics


def _job(args) -> dict:
    """One (row, seed): train (cached) and evaluate (cached); runs in a worker process."""
    cfg_json, row_i, seed, synthetic_dir, seed_path, bench_path, synthetic_key = args
    import torch

    from trainers.data import read_rows

    cfg = ReproduceConfig.model_validate_json(cfg_json)
    torch.set_num_threads(cfg.threads_per_worker)
    row = ROWS[row_i]
    t0 = time.perf_counter()
    seed_rows = decoded(read_rows(Path(seed_path)), cfg.image_size)
    model_dir, key = train_row(cfg, row, seed, Path(synthetic_dir), seed_rows, synthetic_key,
                               Path(seed_path).stem)
    eval_path = model_dir.parent / f"eval-{Path(bench_path).stem}-{_hash(cfg.benchmark.model_dump())}.json"
    if eval_path.exists():
        metrics = json.loads(eval_path.read_text())
    else:
        metrics = evaluate_model(model_dir, read_rows(Path(bench_path)), cfg.benchmark)
        eval_path.write_text(json.dumps(metrics, indent=1))
    return {"row": row.name, "seed": seed, "model": str(model_dir), "key": key, "metrics": metrics,
            "seconds": time.perf_counter() - t0}


def summarize(results: list[dict]) -> list[dict]:
    """Per row: mean and sample std over seeds of each column."""
    out = []
    for row in ROWS:
        runs = [r for r in results if r["row"] == row.name]
        if not runs:
            continue
        entry: dict[str, Any] = {"row": row.name, "seeds": [r["seed"] for r in runs]}
        for key, _ in COLUMNS:
            vals = [float(r["metrics"].get(key, float("nan"))) for r in runs]
            entry[key] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                          "values": vals}
        out.append(entry)
    return out


def markdown_table(summary: list[dict]) -> str:
    head = "| row | " + " | ".join(name for _, name in COLUMNS) + " |"
    lines = [head, "|---|" + "---:|" * len(COLUMNS)]
    for s in summary:
        cells = []
        for key, _ in COLUMNS:
            m, sd = s[key]["mean"], s[key]["std"]
            cells.append(f"{m:.3f} ± {sd:.3f}" if key == "focus_imbalance" else f"{m:.1f} ± {sd:.1f}")
        lines.append(f"| {s['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(), "platform": platform.platform()}


def reproduce(cfg: ReproduceConfig = ReproduceConfig()) -> dict:
    """Build (or read from the cache) the data, train every row for every seed, evaluate; returns results."""
    import torch

    t0 = time.perf_counter()
    load0 = os.getloadavg()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    synthetic_dir = ensure_synthetic(cfg)
    seed_path = ensure_seed_set(cfg)
    bench_path = ensure_benchmark(cfg, seed_path, synthetic_dir)
    t_data = time.perf_counter() - t0
    synthetic_key = synthetic_run_config(cfg).config_hash()
    jobs = [(cfg.model_dump_json(), i, s, str(synthetic_dir), str(seed_path), str(bench_path), synthetic_key)
            for i in range(len(ROWS)) for s in cfg.train_seeds]
    # DetailFusion rows are the longest: start them first so the workers finish together.
    jobs.sort(key=lambda j: ROWS[j[1]].kind != "detailfusion")
    if cfg.workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_job, jobs))
    else:
        torch.set_num_threads(cfg.threads_per_worker)
        results = [_job(j) for j in jobs]
    results.sort(key=lambda r: ([row.name for row in ROWS].index(r["row"]), r["seed"]))
    summary = summarize(results)
    out = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.perf_counter() - t0, "data_seconds": t_data,
        "load_before": load0, "load_after": os.getloadavg(), "machine": machine(),
        "data": _data_facts(synthetic_dir, seed_path, bench_path),
        "config": json.loads(cfg.model_dump_json()), "summary": summary, "runs": results,
    }
    (cfg.out_dir / "results.json").write_text(json.dumps(out, indent=1))
    return out


def _data_facts(synthetic_dir: Path, seed_path: Path, bench_path: Path) -> dict:
    import pyarrow.dataset as pads

    from trainers.data import read_rows

    train = pads.dataset(synthetic_dir / "data" / "train", format="parquet").to_table(
        columns=["neg_text_aligned_image", "generator"])
    bench = read_rows(bench_path)
    return {
        "synthetic_train_rows": train.num_rows,
        "synthetic_rows_with_negatives": train.num_rows - train.column("neg_text_aligned_image").null_count,
        "synthetic_generator": sorted(set(train.column("generator").to_pylist())),
        "seed_set_rows": len(read_rows(seed_path)),
        "benchmark_queries": len(bench),
        "benchmark_gallery": len({r["reference_id"] for r in bench} | {r["target_id"] for r in bench}),
    }


def write_doc(results: dict, path: Path, command: str) -> Path:
    """Put the table, with date, command, machine and timing, between the markers of ``path``."""
    m, d = results["machine"], results["data"]
    block = f"""{DOC_BEGIN}
Generated {results['date']} by `{command}` on {m['cores']} CPU cores ({m['cpu']}), Python {m['python']}.
Wall time {results['seconds'] / 60:.1f} min (data {results['data_seconds']:.0f} s); load average
{results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after (the machine is shared).

Data: {d['synthetic_train_rows']} synthetic train triplets (generator {', '.join(d['synthetic_generator'])},
{d['synthetic_rows_with_negatives']} with FBCIR negatives), {d['seed_set_rows']} seed-set triplets,
benchmark {d['benchmark_queries']} queries over {d['benchmark_gallery']} gallery images.
Mean ± sample std over training seeds {results['summary'][0]['seeds']}; R@K in percent.

{markdown_table(results['summary'])}
{DOC_END}"""
    text = path.read_text() if path.exists() else f"# Reproduction\n\n{DOC_BEGIN}\n{DOC_END}\n"
    if DOC_BEGIN not in text:
        text = text.rstrip() + f"\n\n{DOC_BEGIN}\n{DOC_END}\n"
    head, rest = text.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1] if DOC_END in rest else "\n"
    path.write_text(head + block + tail)
    return path


def load_reproduce_config(path: str | Path | None = None, overrides: dict | None = None) -> ReproduceConfig:
    """Defaults, updated from a YAML file and then from ``overrides`` (dotted keys).

    A missing file is a FileNotFoundError; a bad key or value a ValueError of one line that names it.
    """
    return load_section(ReproduceConfig, path, overrides, source="reproduce config")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainers.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML with ReproduceConfig keys (default: the built-in table config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key, e.g. --set workers=1 --set pretrain.steps=50 (value parsed as YAML)")
    p.add_argument("--doc", default=None, help="write the table into this markdown file (e.g. docs/reproduction.md)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        overrides = parse_overrides(args.set, example="workers=1")
    except ValueError as err:
        p.error(str(err))
    try:
        cfg = load_reproduce_config(args.config, overrides)
    except (FileNotFoundError, ValueError) as err:
        p.error(str(err))
    results = reproduce(cfg)
    print(markdown_table(results["summary"]))
    print(f"\n{results['seconds'] / 60:.1f} min; results in {cfg.out_dir / 'results.json'}")
    if args.doc:
        command = "python -m trainers.reproduce " + " ".join(sys.argv[1:] if argv is None else argv)
        print("wrote", write_doc(results, Path(args.doc), command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
