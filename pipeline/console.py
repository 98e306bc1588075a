"""What the command line shows: one progress display per phase and a closing summary.

Ray, Ray Data and Prefect (its HTTP client included) print only warnings (Ray's core: errors) unless
``--verbose``: their records still reach Ray's session logs and the Prefect API, only the terminal
is spared.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

VERBOSE_ENV = "CIRFORGE_VERBOSE"  # an env var: Ray is set up in another module, maybe another thread


def setup(verbose: bool = False) -> None:
    """Set this process's verbosity; call it before Prefect is imported (it configures logging then)."""
    os.environ[VERBOSE_ENV] = "1" if verbose else ""
    # Prefect's client telemetry and its first-run notice (the server's is off in the Makefile already)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # One handler on the root logger: Prefect then leaves the root alone and its records (flow
    # states, the temporary server, httpx's request lines) propagate here, to be shown or not.
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler], force=True)


def verbose() -> bool:
    return bool(os.environ.get(VERBOSE_ENV))


class Phase:
    """A phase's line: its title, a bar (full when the phase ends), the time taken and a note.

    ``bar()`` adds counted lines under it (the generator's training steps). Off (``on=False``),
    nothing is drawn and every call is a no-op.
    """

    active: Phase | None = None  # the phase whose display is live, for bar() to join

    def __init__(self, title: str, on: bool = True, total: int | None = None, unit: str = ""):
        self.title, self.on, self.total, self.unit = title, on, total, unit
        self.progress = self.task = None

    def __enter__(self) -> Phase:
        if self.on:
            self.progress = _display()
            self.progress.start()
            self.task = self.progress.add_task(self.title, total=self.total, note="", unit=self.unit,
                                               counted=self.total is not None)
            Phase.active = self
        return self

    def advance(self, n: int = 1) -> None:
        if self.progress:
            self.progress.advance(self.task, n)

    def note(self, text: str) -> None:
        if self.progress:
            self.progress.update(self.task, note=text)

    def __exit__(self, failed, *exc) -> None:
        if self.progress:
            if not failed:  # a full bar says done
                total = self.progress.tasks[self.task].total or 1
                self.progress.update(self.task, total=total, completed=total)
            self.progress.stop()
            Phase.active = None


@contextlib.contextmanager
def paused():
    """The live phase's display stopped while a subprocess draws its own (the generator trained in processes)."""
    live = Phase.active.progress if Phase.active else None
    if live:
        live.stop()
    try:
        yield
    finally:
        if live:
            live.start()


class Bar:
    """A counted line with tqdm's ``update``/``set_postfix``/``close``; no-ops without a display."""

    def __init__(self, progress, title: str, total: int, done: int, own: bool):
        self.progress, self.own = progress, own
        if own:
            progress.start()
        self.task = progress.add_task(f"  {title}", total=total, completed=done, note="", unit="steps",
                                      counted=True) if progress else None

    def update(self, n: int = 1) -> None:
        if self.progress:
            self.progress.advance(self.task, n)

    def set_postfix(self, **values) -> None:
        if self.progress:
            self.progress.update(self.task, note=" ".join(f"{k} {v}" for k, v in values.items()))

    def close(self) -> None:
        if self.own:
            self.progress.stop()


def bar(title: str, total: int, done: int = 0, on: bool = True) -> Bar:
    """A counted line in the live phase's display, else in one of its own (a stand-alone command)."""
    live = Phase.active.progress if Phase.active else None
    own = on and live is None
    return Bar(_display() if own else live if on else None, title, total, done, own)


def _display():
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task):  # "12/40 units", and the time left while running, on counted lines only
            if not task.fields["counted"]:
                return Text("")
            left = task.time_remaining
            eta = f" ({int(left) // 60}:{int(left) % 60:02d} left)" if left and not task.finished else ""
            return Text(f"{int(task.completed)}/{int(task.total)} {task.fields['unit']}{eta}", style="green")

    return Progress(TextColumn("{task.description:<18}"), BarColumn(bar_width=30), Count(),
                    TimeElapsedColumn(), TextColumn("{task.fields[note]}"))


def summary(manifest: dict, dataset_dir: Path) -> str:
    """The closing lines of `cirforge generate`: rows in, kept, rejected by reason, where the files are."""
    rows, reasons = manifest["rows"], manifest.get("reject_reasons") or {}
    splits = ", ".join(f"{k} {v}" for k, v in rows["per_split"].items())
    lines = [f"{dataset_dir}: {manifest['state']}, units {manifest['units_committed']}/{manifest['units_total']}",
             f"rows in {rows['in']} = kept {rows['kept']} + rejected {rows['rejected']}",
             f"  kept per split: {splits or 'none'}"]
    if reasons:
        lines.append("  rejected by reason (a row may have several):")
        width = max(len(k) for k in reasons)
        lines += [f"    {k:<{width}}  {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])]
    files = [("data/<split>/*.parquet", "kept rows"), ("rejected/*.parquet", "rejected rows and their reasons"),
             ("manifest.json, README.md", "counts, the dataset card"),
             ("report/index.html", "quality report (`cirforge inspect` adds report/samples.png)")]
    lines.append(f"files in {dataset_dir}/:")
    lines += [f"  {path:<24}  {what}" for path, what in files
              if path != "report/index.html" or (dataset_dir / path).is_file()]
    return "\n".join(lines)
