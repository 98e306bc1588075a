"""The ``cirforge`` command line."""
from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from pipeline.env import set_defaults
from pipeline.job.generator_cli import app as generator_app

set_defaults()

app = typer.Typer(
    help="cirforge: synthetic training data for composed image retrieval (CIR).\n\n"
         "Mine image pairs, write modification texts with an MTST generator, add FBCIR hard "
         "negatives, filter, and write Parquet triplet shards; then train retrieval models.\n\n"
         "Start with:  cirforge world render   (see the embedded ShapesWorld)\n"
         "then:        cirforge generate --config configs/demo.yaml\n"
         "and:         cirforge inspect out/shapesworld-demo\n"
         "and:         cirforge report out/shapesworld-demo   (HTML quality report)",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
world_app = typer.Typer(help="The embedded ShapesWorld: procedural scenes with known ground truth.",
                        no_args_is_help=True)
app.add_typer(world_app, name="world")
filters_app = typer.Typer(help="The quality filters: calibrate the embedding path from labelled triplets.",
                          no_args_is_help=True)
app.add_typer(filters_app, name="filters")

app.add_typer(generator_app, name="generator")


VERBOSE_HELP = "show Ray's and Prefect's own logs (flow states, HTTP requests, Ray Data progress) beside ours"


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@world_app.command("render")
def world_render(
    out: Path = typer.Option(Path("shapesworld.png"), help="PNG file to write the grid to"),
    n: int = typer.Option(16, min=1, max=64, help="number of scenes"),
    seed: int = typer.Option(0, help="seed for the scenes"),
    size: int = typer.Option(128, min=16, max=512, help="image side in pixels"),
):
    """Render a grid of random ShapesWorld scenes with their captions."""
    from pipeline.world_grid import render_grid

    path = render_grid(out, n=n, seed=seed, size=size)
    typer.echo(f"wrote {path}")


@app.command()
def generate(
    config: Path = typer.Option(..., "--config", "-c", help="run config YAML (see configs/demo.yaml)"),
    executor: str = typer.Option("ray", help="'ray' (Ray Data pipeline) or 'local' (in-process)"),
    flow: bool = typer.Option(True, help="run as the Prefect flow (artifacts, retries); --no-flow runs the steps directly"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: --set shards.rows_per_unit=128"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
):
    """Generate a triplet dataset (resumable: a rerun skips committed units)."""
    from pipeline.job.config import ConfigError, load_config

    try:
        cfg = load_config(config, _overrides(set_ or []))
    except ConfigError as err:
        _fail(str(err))
    _require_backend(cfg)
    from pipeline import console

    console.setup(verbose)  # before Prefect is imported
    try:
        from pipeline.job.generate import complete_manifest

        manifest = complete_manifest(cfg)  # finished already: no flow server, no Ray, no mining
        if manifest is None and flow:
            _own_flow_server()
            from flows.generate import generate_flow

            manifest = generate_flow(str(config), executor=executor, overrides=_overrides(set_ or []))
        elif manifest is None:
            from pipeline.job.generate import generate as run

            manifest = run(cfg, executor=executor)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        _fail(str(err))
    typer.echo(console.summary(manifest, cfg.dataset_dir))


def _require_backend(cfg) -> None:
    """A configured decode backend that is not installed fails here, before the flow starts."""
    if cfg.generator.kind == "mtst" and cfg.generator.mtst.infer.backend == "vllm":
        from generators.mtst.vllm_backend import require_vllm

        try:
            require_vllm()
        except ImportError as err:
            _fail(str(err))


def _own_flow_server() -> None:
    """Before a flow starts Prefect's temporary API server (no PREFECT_API_URL: a uvicorn child
    that Prefect stops only at a clean exit), own what this process starts: a watcher kills it
    once this process is gone, even by SIGKILL (``pipeline/run_watch.py``)."""
    from pipeline.run_watch import own_children

    own_children()


def _require_dataset(dataset: Path) -> None:
    if not (dataset / "manifest.json").is_file():
        _fail(f"{dataset} has no manifest.json: give a dataset folder written by `cirforge generate`")


def _overrides(items: list[str]) -> dict:
    from pipeline.config_base import parse_overrides

    try:
        return parse_overrides(items)
    except ValueError as err:
        _fail(str(err))


@app.command()
def inspect(
    dataset: Path = typer.Argument(..., help="dataset folder written by `cirforge generate`"),
    grid: Optional[Path] = typer.Option(None, help="PNG of sample triplets (default: DATASET/report/samples.png)"),
    n: int = typer.Option(8, min=1, max=32, help="triplets in the grid"),
    show_schema: bool = typer.Option(True, "--schema/--no-schema", help="print the Arrow schema"),
):
    """Counts per split, the schema, and a PNG grid of sample triplets."""
    from pipeline.inspect_dataset import sample_grid, schema_text, summary

    try:
        s = summary(dataset)
    except FileNotFoundError as err:
        _fail(str(err))
    typer.echo(f"dataset {dataset}  (state: {s['state']})")
    for split, count in s["counts"].items():
        typer.echo(f"  {split:>9}: {count} rows")
    for reason, count in s["reject_reasons"].items():
        typer.echo(f"  rejected by {reason}: {count}")
    if show_schema:
        typer.echo(schema_text(dataset))
    if sum(v for k, v in s["counts"].items() if k != "rejected"):
        path = sample_grid(dataset, grid or dataset / "report" / "samples.png", n=n)
        typer.echo(f"sample grid: {path}")


@app.command()
def report(
    dataset: Path = typer.Argument(..., help="dataset folder written by `cirforge generate`"),
    samples: int = typer.Option(8, min=1, max=32, help="sample triplets per grid (kept and rejected)"),
):
    """Quality report: HTML + PNGs with counts per stage, rejection reasons, score histograms
    (kept vs rejected) and sample grids (reference, target, both negatives, texts)."""
    from pipeline.report import write_report

    _require_dataset(dataset)
    typer.echo(f"wrote {write_report(dataset, samples=samples)}")


@app.command()
def train(
    dataset: Path = typer.Argument(..., help="dataset folder written by `cirforge generate` (pretraining shards)"),
    out: Path = typer.Option(Path("out/train"), help="where checkpoints, loss curves and metrics.json go"),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="YAML of trainer keys (trainers/nightly.py NightlyConfig)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a key: --set pretrain.steps=50"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
):
    """Train a retrieval model on a dataset (the Prefect flow: pretrain, finetune, evaluate)."""
    from pipeline import console

    console.setup(verbose)  # before Prefect is imported
    from flows.train import train_flow

    _require_dataset(dataset)
    if config is not None and not config.is_file():
        _fail(f"--config {config}: file not found")
    _own_flow_server()
    try:
        metrics = train_flow(str(dataset), str(out), str(config) if config else None, _overrides(set_ or []))
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    typer.echo(json.dumps(metrics, indent=1))


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Argument(..., help="a model folder written by training (cirforge_model.json, model.safetensors)"),
    benchmark: str = typer.Option(..., help="cirr, fashioniq or circo"),
    root: Path = typer.Option(..., help="the benchmark folder in its official layout (docs/benchmarks-real.md)"),
    split: str = typer.Option("val", help="val (metrics) or test (the test-server files; CIRR test1, CIRCO test)"),
    out: Optional[Path] = typer.Option(None, help="where metrics.json (and submission files) go; default MODEL/eval-BENCHMARK-SPLIT"),
    batch_size: int = typer.Option(64, min=1, help="images / queries per forward pass"),
    workers: int = typer.Option(4, min=0, help="DataLoader worker processes decoding images"),
):
    """Evaluate a model on CIRR, FashionIQ or CIRCO by the benchmark's official protocol: prints the table,
    writes metrics.json; on a test split writes the submission files."""
    from trainers.benchmarks import KINDS, check
    from trainers.config import EvalConfig
    from trainers.evaluate_real import evaluate_folder, table

    if benchmark not in KINDS:
        _fail(f"--benchmark {benchmark!r}: choose one of {', '.join(KINDS)}")
    if not (model / "cirforge_model.json").is_file():
        _fail(f"{model}: no cirforge_model.json (give a model folder written by training)")
    out = out or model / f"eval-{benchmark}-{split}"
    try:
        check(root, split, benchmark)
        result = evaluate_folder(model, root, split, benchmark, EvalConfig(batch_size=batch_size, num_workers=workers), out)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    typer.echo(table(result))
    typer.echo(f"wrote {out / 'metrics.json'}")


@app.command()
def retrieval(
    config: Path = typer.Option(..., "--config", "-c", help="YAML of trainers.retrieval.RetrievalConfig keys "
                                                          "(configs/retrieval-cirr.yaml)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a key: --set finetune.optim.max_steps=10"),
):
    """The recipe's retrieval steps on a real benchmark: pretrain on shards, PTHA finetune on the benchmark's
    train split, evaluate on val, write the test submission (one process; several GPUs: `accelerate launch
    -m trainers.retrieval`)."""
    from trainers.evaluate_real import table
    from trainers.retrieval import load_retrieval_config, run

    try:
        cfg = load_retrieval_config(config, _overrides(set_ or []))
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        result = run(cfg)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    for key in ("val", "test"):
        if key in result:
            typer.echo(table(result[key]))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def reproduce(ctx: typer.Context):
    """The ShapesWorld reproduction table (seed set only, + synthetic pretraining, + PTHA reverse,
    + FBCIR negatives, DetailFusion; 3 training seeds). Options: --config, --set KEY=VALUE,
    --doc docs/reproduction.md (see `python -m trainers.reproduce --help`)."""
    from trainers.reproduce import main as reproduce_main

    raise typer.Exit(reproduce_main(list(ctx.args)) or 0)


@filters_app.command("calibrate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def filters_calibrate(ctx: typer.Context):
    """Thresholds of the embedding-path filters and negative checks from a labelled sample, written as a
    config snippet. Options: --labels FILE, --dataset DIR, --config, --min-precision, --min-recall, --confidence,
    --texts combined|rules, --out
    (see `python -m filters.calibrate --help` and docs/quality.md)."""
    from filters.calibrate import main as calibrate_main

    calibrate_main(list(ctx.args))


@app.command("config-reference")
def config_reference(out: Optional[Path] = typer.Option(None, help="write here instead of printing")):
    """Print the config reference (every key, type, default, meaning) as Markdown."""
    from pipeline.job.config_doc import render

    text = render()
    if out:
        out.write_text(text)
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)


@app.command("export")
def export_cmd(
    dataset: Path = typer.Argument(..., help="dataset folder written by `cirforge generate`"),
    format: str = typer.Option(..., "--format", "-f", help="cirr or fashioniq (see docs/interop.md)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder to write (must not exist, or be empty)"),
    category: str = typer.Option("cirforge", help="fashioniq: the category in the file names (e.g. dress)"),
    overwrite: bool = typer.Option(False, help="replace a non-empty --out folder"),
):
    """Export kept triplets to the CIRR or FashionIQ layout (images + caption/split JSON files)."""
    from pipeline.export import export_dataset

    try:
        record = export_dataset(dataset, format, out, category=category, overwrite=overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        _fail(str(err))
    per = ", ".join(f"{k} {v['triplets']} triplets / {v['images']} images" for k, v in record["splits"].items())
    typer.echo(f"wrote {out} ({format}): {per}")


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    # SIGTERM ends the run the way Ctrl-C does: finally blocks and atexit run (they stop Prefect's
    # temporary server and Ray). Python's default would end the process on the spot, and so does
    # Prefect, which hands a SIGTERM on to the handler it found once it marked the flow run Crashed.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
