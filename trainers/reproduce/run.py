"""The reproduction table's trainings and evaluations: each (row, training seed) is one job that trains
its phases and evaluates the model on the benchmark, both cached under ``out_dir`` by config hash;
``reproduce`` builds the data, runs the jobs in worker processes and writes ``results.json``.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from trainers.config import EvalConfig, TrainConfig
from trainers.reproduce.config import ROWS, BenchmarkSpec, ReproduceConfig, RowSpec, cache_key, input_size
from trainers.reproduce.sets import (data_facts, decoded, ensure_benchmark, ensure_seed_set, ensure_synthetic,
                                     caption_rows, synthetic_rows, synthetic_run_config)
from trainers.reproduce.claims import test_claims
from trainers.reproduce.table import machine, summarize


def _phase_configs(cfg: ReproduceConfig, row: RowSpec, seed: int, phase: str) -> list[TrainConfig]:
    """The TrainConfigs of one phase (DetailFusion: two stages per phase); out_dir set by the caller."""
    spec = cfg.pretrain if phase == "pretrain" else cfg.finetune
    model = cfg.model.model_copy(update={"kind": row.kind, "image_size": input_size(cfg)})
    loss = {"p2p": cfg.p2p if row.p2p else 0.0, "fbcir": row.fbcir, "t2t": cfg.t2t}
    if row.kind == "detailfusion":
        stages = ("df_di", "df_joint") if phase == "pretrain" else ("df_joint", "df_compositor")
        steps = (spec.steps // 2, spec.steps - spec.steps // 2)
    else:
        stages, steps = ("ptha",), (spec.steps,)
    return [TrainConfig.model_validate({
        "model": model.model_dump(), "loss": loss, "stage": stage, "seed": seed,
        "data": {"batch_size": spec.batch_size}, "optim": {"lr": spec.lr, "max_steps": n, "weight_decay": 0.0,
                                                               "warmup_steps": min(spec.warmup_steps, n - 1),
                                                               "schedule": spec.schedule},
        "checkpoint_every": 50, "progress": False, "num_threads": cfg.threads_per_worker, "device": "cpu",
    }) for stage, n in zip(stages, steps) if n > 0]


def _caption_config(cfg: ReproduceConfig, row: RowSpec, seed: int) -> TrainConfig:
    """The caption stage: L_t2t alone (caption [CLS] vs the image's tokens), the same model as the row's."""
    c = cfg.captions
    model = cfg.model.model_copy(update={"kind": row.kind, "image_size": input_size(cfg)})
    return TrainConfig.model_validate({
        "model": model.model_dump(), "loss": {"q2t": 0.0, "t2t": 1.0, "p2p": 0.0, "fbcir": False},
        "stage": "df_joint" if row.kind == "detailfusion" else "ptha", "seed": seed,
        "data": {"batch_size": c.batch_size, "max_text_len": c.max_text_len},
        "optim": {"lr": c.lr, "max_steps": c.steps, "weight_decay": 0.0, "warmup_steps": min(30, c.steps - 1),
                  "schedule": "cosine"},
        "checkpoint_every": 100, "progress": False, "num_threads": cfg.threads_per_worker, "device": "cpu",
    })


def _key_of(tc: TrainConfig) -> dict:
    return tc.model_dump(mode="json", exclude={"out_dir", "init_from", "progress", "resume", "num_threads", "device"})


DONE = "done.json"


def _run_phase(tc: TrainConfig, data, data_key: str, init: tuple[Path, str] | None, root: Path,
               vocab=None) -> tuple[Path, str]:
    """Train one stage unless its folder says it is done; returns (model folder, cache key)."""
    from trainers.loop import finetune, pretrain

    key = cache_key({"train": _key_of(tc), "data": data_key, "init": init[1] if init else None})
    out = root / "runs" / key
    if (out / DONE).exists():
        return out / "model", key
    tc = tc.model_copy(update={"out_dir": out, "init_from": init[0] if init else None})
    t0 = time.perf_counter()
    data = data() if callable(data) else data  # the synthetic rows, decoded on first use
    if vocab is not None:  # a first phase builds the tokenizer: from every text the row will see
        from trainers.data import MemoryTriplets
        from trainers.loop import train

        result = train(MemoryTriplets(data), tc, texts=vocab)
    else:
        result = pretrain(data, tc) if isinstance(data, Path) else finetune(data, tc)  # rows: held in memory
    (out / DONE).write_text(json.dumps({"seconds": time.perf_counter() - t0, "final": result.history[-1]}))
    return result.model_dir, key


def train_row(cfg: ReproduceConfig, row: RowSpec, seed: int, synthetic_dir: Path, seed_rows: list[dict],
              synthetic_key: str, seed_key: str, vocab_dirs: tuple[Path, ...] = ()) -> tuple[Path, str]:
    """Caption stage (when configured), pretrain (when the row does), finetune; returns the final model
    folder and its key. ``vocab_dirs``: every synthetic set, so that all rows share one tokenizer."""
    init = None
    synthetic = functools.cache(lambda: synthetic_rows(synthetic_dir, input_size(cfg)))  # only if one trains
    if cfg.captions.steps:
        captions = functools.cache(lambda: caption_rows(cfg, input_size(cfg)))

        def vocab():  # captions, seed-set and synthetic texts: the later phases keep this tokenizer
            from trainers.data import ParquetTriplets
            from trainers.loop import _parquet_texts, _row_texts

            yield from (r["modification_text"] for r in captions())
            yield from _row_texts(seed_rows)
            for d in vocab_dirs or (synthetic_dir,):
                yield from _parquet_texts(ParquetTriplets(d))

        key = cache_key({"captions": cfg.captions.model_dump(), "seed_set": seed_key,
                         "vocab": [str(Path(d).name) for d in vocab_dirs or (synthetic_dir,)]})
        init = _caption_init(cfg, row, seed, captions, key, vocab)
    if row.pretrain:
        for tc in _phase_configs(cfg, row, seed, "pretrain"):
            init = _run_phase(tc, synthetic, synthetic_key, init, cfg.out_dir)
    for tc in _phase_configs(cfg, row, seed, "finetune"):
        init = _run_phase(tc, seed_rows, seed_key, init, cfg.out_dir)
    return init


def _caption_init(cfg: ReproduceConfig, row: RowSpec, seed: int, captions, key: str, vocab) -> tuple[Path, str]:
    """The caption stage's model (shared by every Q-Former row of a seed); DetailFusion starts both its
    branches from that model's Q-Former, as the paper starts both from one BLIP-2 Q-Former."""
    qrow = RowSpec("captions", pretrain=False, p2p=False, fbcir=False)
    init = _run_phase(_caption_config(cfg, qrow, seed), captions, key, None, cfg.out_dir, vocab=vocab)
    if row.kind != "detailfusion":
        return init
    out = cfg.out_dir / "runs" / cache_key({"detailfusion_from": init[1]})
    if not (out / DONE).exists():
        from trainers.factory import create_model, load_model, load_saved_tokenizer, save_model

        source = load_model(init[0])
        tokenizer = load_saved_tokenizer(init[0])
        model_cfg = source.model_config.model_copy(update={"kind": "detailfusion"})
        df = create_model(model_cfg, tokenizer, seed=seed)
        state = source.state_dict()
        mapped = {k: v for k, v in state.items() if k.startswith("vision.")}
        for branch in ("gm", "di"):
            mapped.update({f"{branch}.{k[len('branch.'):]}": v for k, v in state.items() if k.startswith("branch.")})
        missing = df.load_state_dict(mapped, strict=False).missing_keys
        assert all(k.startswith("compositor.") for k in missing), missing
        save_model(df, out / "model", tokenizer)
        (out / DONE).write_text("{}")
    return out / "model", out.name


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
    cfg_json, row_i, seed, synthetic_dir, seed_path, bench_path, synthetic_key, vocab_dirs = args
    import torch

    from trainers.data import read_rows

    cfg = ReproduceConfig.model_validate_json(cfg_json)
    torch.set_num_threads(cfg.threads_per_worker)
    row = ROWS[row_i]
    t0 = time.perf_counter()
    seed_rows = decoded(read_rows(Path(seed_path)), input_size(cfg))
    model_dir, key = train_row(cfg, row, seed, Path(synthetic_dir), seed_rows, synthetic_key,
                               Path(seed_path).stem, tuple(Path(d) for d in vocab_dirs))
    eval_path = model_dir.parent / f"eval-{Path(bench_path).stem}-{cache_key(cfg.benchmark.model_dump())}.json"
    if eval_path.exists():
        metrics = json.loads(eval_path.read_text())
    else:
        metrics = evaluate_model(model_dir, read_rows(Path(bench_path)), cfg.benchmark)
        eval_path.write_text(json.dumps(metrics, indent=1))
    return {"row": row.name, "seed": seed, "model": str(model_dir), "key": key, "metrics": metrics,
            "seconds": time.perf_counter() - t0}


def reproduce(cfg: ReproduceConfig = ReproduceConfig()) -> dict:
    """Build (or read from the cache) the data, train every row for every seed, evaluate; returns results."""
    import torch

    t0 = time.perf_counter()
    load0 = os.getloadavg()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    synthetic = {o: ensure_synthetic(cfg, oracle=o) for o in (False, True)}
    seed_path = ensure_seed_set(cfg)
    bench_path = ensure_benchmark(cfg, seed_path, [synthetic[False], synthetic[True]])
    t_data = time.perf_counter() - t0
    keys = {o: synthetic_run_config(cfg, oracle=o).config_hash() for o in (False, True)}
    both = (str(synthetic[False]), str(synthetic[True]))
    on = [row.oracle or cfg.rows_on_oracle for row in ROWS]
    jobs = [(cfg.model_dump_json(), i, s, str(synthetic[on[i]]), str(seed_path), str(bench_path),
             keys[on[i]], both) for i in range(len(ROWS)) for s in cfg.train_seeds]
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
    claims = test_claims(results)
    out = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.perf_counter() - t0, "data_seconds": t_data,
        "load_before": load0, "load_after": os.getloadavg(), "machine": machine(),
        "data": data_facts(synthetic[False], seed_path, bench_path, synthetic[True]),
        "config": json.loads(cfg.model_dump_json()), "summary": summary, "claims": claims,
        "runs": results,
    }
    (cfg.out_dir / "results.json").write_text(json.dumps(out, indent=1))
    return out
