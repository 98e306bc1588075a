"""``cirforge generator``: train the MTST generator on a seed set, write reverse texts for a benchmark."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="The MTST text generator: train it on a seed set (ShapesWorld, CIRR, FashionIQ, shards); "
                       "write reverse texts for a benchmark's triplets.", no_args_is_help=True)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def load_generator_config(path: Path, overrides: dict):
    """The MTST section a file holds: a run config's ``generator.mtst`` (trained under its
    ``<cache_dir>/mtst``, where ``cirforge generate`` finds it) or an MTST config."""
    from generators.mtst.config import MTSTConfig
    from pipeline.config_base import load_section, read_yaml
    from pipeline.job.config import load_config

    if "generator" in read_yaml(path):
        return load_config(path, overrides).mtst_config()
    return load_section(MTSTConfig, path, overrides, what="MTST config", under=("mtst",))


@app.command("train")
def train(
    config: Path = typer.Option(..., "--config", "-c", help="run config or MTST config YAML (generator.mtst.data "
                                "names the seed set)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a key: --set generator.mtst.train.epochs=2"),
    out: Optional[Path] = typer.Option(None, help="also copy the trained model folder here (e.g. /models/mtst-cirr)"),
):
    """Train the generator (cached by config hash; resumes from its last checkpoint). Runs on one
    process, or one per GPU with `accelerate launch -m pipeline.job.cli generator train ...`."""
    from pipeline.config_base import ConfigError, parse_overrides
    from generators.mtst.train import train_mtst

    try:
        cfg = load_generator_config(config, parse_overrides(set_ or []))
        res = train_mtst(cfg)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as err:
        _fail(str(err).splitlines()[0])
    if out is not None and res.model_dir.name == "final":
        shutil.copytree(res.model_dir, out, dirs_exist_ok=True)
    info_file = res.model_dir / "train_info.json"
    seed = json.loads(info_file.read_text())["seed_set"] if info_file.is_file() else {}
    state = "cached" if res.cached else f"trained in {res.seconds:.0f} s"
    typer.echo(f"model: {out or res.model_dir} ({state}, {res.steps} steps, last loss {res.losses[-1]:.4f}); "
               f"seed set {seed.get('kind', '?')}: {seed.get('triplets', '?')} triplets, "
               f"{seed.get('skipped', 0)} skipped {seed.get('skipped_by_reason', {})}")


@app.command("reverse")
def reverse(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="a recipe (run config): its trained generator "
                                          "(trained first if not cached), its seed set's dataset, root and split"),
    model: Optional[Path] = typer.Option(None, help="a trained MTST folder (cirforge generator train)"),
    dataset: Optional[str] = typer.Option(None, help="cirr or fashioniq"),
    root: Optional[Path] = typer.Option(None, help="the benchmark folder (official layout; see docs/interop.md)"),
    split: str = typer.Option("train", help="whose triplets: train (what PTHA reads), val, test1 / test"),
    out: Optional[Path] = typer.Option(None, help="also write the triplets with reverse texts as cirforge shards here"),
    category: Optional[list[str]] = typer.Option(None, help="fashioniq: categories (default: every one found)"),
    embed_images: bool = typer.Option(False, help="shards: embed the image bytes (default: reference the files)"),
    batch_size: int = typer.Option(64, min=1, help="images per vision pass and texts per decode batch"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16"),
    backend: str = typer.Option("transformers", help="transformers or vllm"),
):
    """Write reverse texts (target back to reference) for a benchmark's triplets, into the MTST
    authors' JSON layout beside its captions (and into shards with --out)."""
    from pipeline.config_base import ConfigError
    from generators.mtst.config import MTSTInferConfig
    from generators.mtst.reverse import write_reverse_texts

    try:
        if config is not None:  # the recipe names everything; its infer section decodes
            from generators.mtst.train import train_mtst

            cfg = load_generator_config(config, {})
            if cfg.data.kind not in ("cirr", "fashioniq"):
                _fail(f"{config}: generator.mtst.data.kind={cfg.data.kind!r}; reverse texts are for cirr or fashioniq")
            model, dataset, root, split = train_mtst(cfg).model_dir, cfg.data.kind, cfg.data.path, cfg.data.split
            category, infer = category or cfg.data.categories, cfg.infer
        else:
            missing = [k for k, v in (("--model", model), ("--dataset", dataset), ("--root", root)) if v is None]
            if missing:
                _fail(f"{missing[0]} is missing: give --model, --dataset and --root, or --config with a recipe")
            infer = MTSTInferConfig(batch_size=batch_size, device=device, dtype=dtype, backend=backend)
        if dataset not in ("cirr", "fashioniq"):
            _fail(f"--dataset {dataset!r}: allowed are cirr, fashioniq")
        if not (Path(model) / "mtst_config.json").is_file():
            _fail(f"--model {model}: not a trained MTST folder (no mtst_config.json); train one with "
                  "`cirforge generator train`")
        rec = write_reverse_texts(model, dataset, root, split, out=out, infer=infer, categories=category,
                                  embed_images=embed_images)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as err:
        _fail(str(err).splitlines()[0])
    typer.echo(f"reverse texts: {rec['written']} written ({rec['empty']} empty), {rec['skipped']} triplets skipped "
               f"{rec['skipped_by_reason']}; files: {', '.join(rec['files'])}"
               + (f"; shards: {rec['shards']}" if "shards" in rec else ""))
