"""The runtime: composes stages into one pipeline that ends in the shard writer.

Two executors run the same stages over the same rows: ``local`` (in-process, for tests and tiny
runs) and ``ray`` (Ray Data ``map_batches``: actor pools for stateful or GPU stages). Output
batches stream back to the driver in order, where the ShardWriter commits each unit as soon as
its last row arrives, so a crash loses at most the units in flight.
"""
from __future__ import annotations

import itertools
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from pipeline import run_watch
from pipeline.env import set_defaults
from pipeline.shards import ShardWriter
from pipeline.stage import Batch, Columns, Stage, batch_len, nulls, to_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    """A stage class and the keyword arguments its constructor takes (built once per worker)."""

    cls: type[Stage]
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Resources decided by the run config (the driver may have no GPU while its workers do);
    # None: the class's declaration.
    num_gpus: float | None = None
    concurrency: int | None = None

    @property
    def gpus(self) -> float:
        """GPUs per actor: the spec's setting, else the class's declaration."""
        return self.cls.num_gpus if self.num_gpus is None else self.num_gpus

    @property
    def columns(self) -> Columns:
        """What the stage this spec builds reads and writes (it is not built)."""
        return self.cls.declared_columns(self.kwargs)

    def build(self) -> Stage:
        return self.cls(**self.kwargs)


@dataclass(frozen=True)
class UnitFeed:
    """Rows made unit by unit where they are consumed (the local loop, or a Ray task per unit),
    so the driver never holds more than the units in flight; ``make`` must be picklable."""

    units: list[int]
    make: Callable[[int], list[dict]]  # a unit's rows
    columns: tuple[str, ...]  # what those rows hold (checked against the chain before launch)


def check_chain(specs: list[StageSpec], initial_columns: Iterable[str]) -> None:
    """Fail before launch if a stage reads a column no earlier stage (or the input) provides."""
    have = set(initial_columns)
    for s in specs:
        cols = s.columns
        missing = [c for c in cols.reads if c not in have]
        if missing:
            raise ValueError(f"stage {s.cls.name!r} reads {missing}, which no earlier stage writes "
                             f"(available: {sorted(have)})")
        have.update(cols.writes)


def _rows(batch: Batch) -> list[dict]:
    cols = {k: to_list(nulls(v)) for k, v in batch.items()}
    n = batch_len(batch)
    return [{k: _plain(v[i]) for k, v in cols.items()} for i in range(n)]


def _plain(v: Any) -> Any:
    # Ray's numpy batches turn list cells into object arrays; the writer wants lists.
    if hasattr(v, "tolist") and not isinstance(v, (bytes, str)):
        return v.tolist()
    return v


def _columns(rows: list[dict]) -> Batch:
    keys = rows[0].keys() if rows else ()
    return {k: [r[k] for r in rows] for k in keys}


def _chunks(rows: Iterable[dict], n: int) -> Iterator[list[dict]]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


class Runtime:
    """Runs stage specs over rows and feeds the writer; ``executor`` is 'local' or 'ray'."""

    def __init__(self, specs: list[StageSpec], executor: str = "local", ray_address: str | None = None,
                 num_cpus: int | None = None, batch_size: int = 64):
        if executor not in ("local", "ray"):
            raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
        first_driver = next((i for i, s in enumerate(specs) if s.cls.driver), len(specs))
        late = [s.cls.name for s in specs[first_driver:] if not s.cls.driver]
        if late:
            raise ValueError(f"stages {late} come after a driver stage: driver stages must be last")
        self.specs = specs
        self.remote_specs, self.driver_specs = specs[:first_driver], specs[first_driver:]
        self.executor = executor
        self.ray_address = ray_address or os.environ.get("RAY_ADDRESS")
        self.num_cpus = num_cpus
        self.batch_size = batch_size

    def run(self, rows: list[dict] | UnitFeed, writer: ShardWriter,
            on_commit: Callable[[int, int], None] | None = None,
            history: Iterable[list[dict]] = ()) -> int:
        """Process ``rows`` (each has ``unit``; or a ``UnitFeed``); returns the number of rows written.

        ``history``: the rows of units committed earlier, in run order (chunks), which driver
        stages replay before the new rows arrive.
        """
        if isinstance(rows, UnitFeed):
            check_chain(self.specs, rows.columns)
        elif rows:
            check_chain(self.specs, rows[0].keys())
        writer.stages = tuple(s.cls.name for s in self.specs)
        drivers = [s.build() for s in self.driver_specs]
        if drivers:
            for chunk in history:
                for d in drivers:
                    d.replay(chunk)
        outputs = self._run_local(rows) if self.executor == "local" else self._run_ray(rows)
        n = 0
        for batch_rows in outputs:
            if drivers and batch_rows:
                batch = _columns(batch_rows)
                for d in drivers:
                    batch = d(batch)
                batch_rows = _rows(batch)
            n += len(batch_rows)
            for unit in writer.add(batch_rows):
                if on_commit:
                    on_commit(unit, n)
        if writer.open_units:
            raise RuntimeError(f"units {writer.open_units} did not receive all their rows")
        return n

    # -- executors ---------------------------------------------------------------------------
    def _run_local(self, rows: list[dict] | UnitFeed) -> Iterator[list[dict]]:
        stages = [s.build() for s in self.remote_specs]
        if isinstance(rows, UnitFeed):
            feed = rows
            rows = (r for u in feed.units for r in feed.make(u))
        for chunk in _chunks(rows, self.batch_size):
            batch = _columns(chunk)
            for stage in stages:
                batch = stage(batch)
            yield _rows(batch)

    def _run_ray(self, rows: list[dict] | UnitFeed) -> Iterator[list[dict]]:
        import ray
        import ray.data

        from pipeline.console import verbose

        init_ray(self.ray_address, self.num_cpus)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # units then complete one after another
        # The units bar (pipeline.console) is the display; Ray Data's own (a block of lines every
        # 10 s when stdout is no terminal) and its plan print come back with --verbose.
        ctx.enable_progress_bars = ctx.print_on_execution_start = verbose()
        if not verbose():
            _quiet_ray_data()
        if isinstance(rows, UnitFeed):  # a task per unit makes its rows (reads its images) in the cluster
            ds = ray.data.from_items([{"unit": u} for u in rows.units], override_num_blocks=max(1, len(rows.units)))
            # No CPU asked: reading a unit's images is light, and on a small machine the actor pools
            # may hold every CPU, so a task that waited for one would never start (a deadlock).
            ds = ds.flat_map(_UnitTask(rows.make), num_cpus=0)
        else:
            ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // self.batch_size))
        for spec in self.remote_specs:
            cls = spec.cls
            kw: dict[str, Any] = dict(batch_format="numpy", batch_size=cls.batch_size,
                                      num_cpus=cls.num_cpus, num_gpus=spec.gpus or None)
            if cls.stateful or spec.gpus:
                size = spec.concurrency or cls.concurrency
                if not self.ray_address:
                    # The run's own Ray is one machine: a stage actor that crashed there would crash
                    # again, and a stopped run resumes from its shards. No restarts also spares the
                    # console Ray's false alarm about restartable actors (ray-project/ray#57733).
                    kw["max_restarts"] = 0
                with warnings.catch_warnings():
                    # Ray 2.60 (pinned) takes max_restarts only as a remote arg, which it calls
                    # deprecated (to go in 2.64) while naming no replacement for it.
                    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
                    ds = ds.map_batches(cls, fn_constructor_kwargs=spec.kwargs,
                                        compute=ray.data.ActorPoolStrategy(size=size), **kw)
            else:
                ds = ds.map_batches(_TaskStage(spec), **kw)
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            yield _rows(batch)


class _UnitTask:
    """A unit's rows from its number (a Ray Data row ``{"unit": u}``)."""

    def __init__(self, make: Callable[[int], list[dict]]):
        self.make = make

    def __call__(self, row: dict) -> list[dict]:
        return self.make(int(row["unit"]))


class _TaskStage:
    """A stateless stage run as plain Ray tasks: rebuilt per batch, cheap by declaration."""

    def __init__(self, spec: StageSpec):
        self.spec = spec

    def __call__(self, batch: Batch) -> Batch:
        return self.spec.build()(batch)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray (or join ``address``) once per process.

    A local Ray is owned by the run: it gets a temp dir of its own, and a watcher in its own
    session (``run_watch.py``) kills every process of it once this process is gone, even by a
    SIGKILL of it or of its process group."""
    import ray

    from pipeline.console import verbose

    # Quiet: errors only (its start-up warnings, e.g. on token authentication, are for cluster
    # operators) and the workers' output stays in the session logs; --verbose shows both.
    kw = dict(log_to_driver=verbose(), logging_level=logging.INFO if verbose() else logging.ERROR)
    if ray.is_initialized():
        return
    set_defaults()
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, **kw)
        return
    # short and under /tmp: Ray's unix socket paths under the temp dir must stay under 107 bytes
    temp_dir = tempfile.mkdtemp(prefix="cf-ray-", dir="/tmp")
    run_watch.watch(temp_dir)  # without /proc, Ray's own fate sharing is all there is
    ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp_dir, **kw)


def _quiet_ray_data() -> None:
    """Ray Data's console handler to warnings; its file log in the Ray session keeps everything."""
    from ray.util.debug import log_once

    log_once("ray_data_progress_manager_disabled")  # spends its one notice that the bars are off
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.WARNING)
