"""The recipe's retrieval steps on a real benchmark (MTST's protocol): 1. pretrain on the synthetic shards,
2. PTHA finetune on the benchmark's training split with its reverse texts, 3. evaluate on val,
4. write the test-server files. Every folder a step needs is checked before the first step trains.

Run: ``python -m trainers.retrieval --config configs/retrieval-cirr.yaml`` (one process), or
``accelerate launch --multi_gpu --num_processes 8 -m trainers.retrieval --config ...`` (one process per GPU;
the main process evaluates). ``--set key=value`` overrides a key.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config_base import Section, load_section, parse_overrides
from trainers import benchmarks
from trainers.config import EvalConfig, TrainConfig

log = logging.getLogger(__name__)


class RetrievalConfig(Section):
    """A real-benchmark run: which benchmark and folders, and the pretrain / finetune phases."""

    benchmark: Literal["cirr", "fashioniq", "circo"] = Field(..., description="the benchmark evaluated on")
    root: Path = Field(..., description="the benchmark folder in its official layout (docs/benchmarks-real.md)")
    shards: Path | None = Field(None, description="cirforge dataset folder to pretrain on (needs `pretrain`)")
    finetune_root: Path | None = Field(None, description="folder whose train split finetunes; default root "
                                                         "(CIRCO has none: give a CIRR folder)")
    init_from: Path | None = Field(None, description="a trained model folder to start from or, with no phase, to evaluate")
    out_dir: Path = Path("out/retrieval")
    pretrain: TrainConfig | None = Field(None, description="phase 1 on the shards (out_dir and init_from are set here)")
    finetune: TrainConfig | None = Field(None, description="phase 2 on the benchmark's training split")
    eval: EvalConfig = EvalConfig(batch_size=64)
    val_split: str | None = "val"
    test_split: str | None = Field("test", description="writes the submission files (CIRR test1, CIRCO test); "
                                                       "null for FashionIQ")

    @model_validator(mode="after")
    def _phases_have_data(self):
        if self.pretrain is not None and self.shards is None:
            raise ValueError("pretrain is set but shards is not: give the cirforge dataset folder")
        if self.pretrain is None and self.finetune is None and self.init_from is None:
            raise ValueError("nothing to evaluate: set pretrain, finetune or init_from")
        return self


def load_retrieval_config(path: str | Path | None, overrides: dict | None = None) -> RetrievalConfig:
    """The YAML file's keys (or its ``retrieval:`` section), then dotted overrides."""
    return load_section(RetrievalConfig, path, overrides, what="retrieval config", under=("retrieval",))


def check_dataset(path: str | Path, split: str, need_targets: bool = True) -> str:
    """Fail at once (FileNotFoundError / ValueError naming the folder) unless ``path`` has a usable ``split``:
    a cirforge dataset's shards, or an official benchmark split with annotated targets. Returns its kind."""
    kind = benchmarks.detect(path)
    if kind is None:
        from trainers.data import ParquetTriplets

        ParquetTriplets(path, split)
        return "cirforge"
    found = benchmarks.read(path, split, kind)
    if not found.queries or (need_targets and not found.has_targets):
        raise ValueError(f"{path}: {found.name} has no usable queries with targets {found.counts()}")
    return kind


def _checkpoint_exists(cfg: TrainConfig | None) -> None:
    ckpt = cfg.model.checkpoint if cfg is not None and cfg.model.size == "real" else None
    if ckpt and ckpt.startswith(("/", ".", "~")) and not Path(ckpt).expanduser().exists():
        raise FileNotFoundError(f"model.checkpoint {ckpt} not found")


def check_inputs(cfg: RetrievalConfig) -> None:
    """Every folder and file the run will read, before anything trains."""
    if cfg.pretrain is not None:
        check_dataset(cfg.shards, cfg.pretrain.data.split)
    if cfg.finetune is not None:
        check_dataset(cfg.finetune_root or cfg.root, cfg.finetune.data.split)
    for phase in (cfg.pretrain, cfg.finetune):
        _checkpoint_exists(phase)
    if cfg.init_from is not None and not (cfg.init_from / "cirforge_model.json").is_file():
        raise FileNotFoundError(f"init_from {cfg.init_from}: no cirforge_model.json (a folder saved by training)")
    for split in (cfg.val_split, cfg.test_split):
        if split is not None:
            benchmarks.check(cfg.root, split, cfg.benchmark)


def run(cfg: RetrievalConfig) -> dict:
    """The four steps; returns the val metrics and the submission files written."""
    from accelerate import PartialState

    from trainers.evaluate_real import evaluate_folder
    from trainers.loop import finetune, pretrain

    check_inputs(cfg)
    out, model_dir = Path(cfg.out_dir), cfg.init_from
    # 1. pretrain on the synthetic shards
    if cfg.pretrain is not None:
        phase = cfg.pretrain.model_copy(update={"out_dir": out / "pretrain", "init_from": model_dir})
        model_dir = pretrain(cfg.shards, phase).model_dir
    # 2. PTHA finetune on the benchmark's training split (the authors' reverse texts when present)
    if cfg.finetune is not None:
        phase = cfg.finetune.model_copy(update={"out_dir": out / "finetune", "init_from": model_dir})
        model_dir = finetune(cfg.finetune_root or cfg.root, phase).model_dir
    result = {"model_dir": str(model_dir)}
    state = PartialState()
    if state.is_main_process:
        # 3. evaluate on val; 4. the test-server files
        if cfg.val_split is not None:
            result["val"] = evaluate_folder(model_dir, cfg.root, cfg.val_split, cfg.benchmark, cfg.eval, out / "val")
        if cfg.test_split is not None:
            result["test"] = evaluate_folder(model_dir, cfg.root, cfg.test_split, cfg.benchmark, cfg.eval, out / "test")
        (out / "results.json").write_text(json.dumps(result, indent=1))
    state.wait_for_everyone()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainers.retrieval", description="The recipe's retrieval steps on a "
                                 "real benchmark: pretrain, PTHA finetune, evaluate on val, write the test files.")
    ap.add_argument("--config", "-c", required=True, help="YAML of RetrievalConfig keys (configs/retrieval-*.yaml)")
    ap.add_argument("--set", action="append", default=[], help="override a key: --set finetune.optim.max_steps=10")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(load_retrieval_config(args.config, parse_overrides(args.set)))
    from trainers.evaluate_real import table

    for key in ("val", "test"):
        if key in result:
            print(table(result[key]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
