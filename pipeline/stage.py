"""The one shape every stage has: a callable class over column batches, with declared resources.

A stage never imports Ray. Its constructor loads what it needs once; ``__call__(batch)`` maps a
column batch (``dict[str, list | numpy.ndarray]``) to a column batch. The runtime turns it into a
Ray Data ``map_batches`` operator; a test calls it directly. A stage declares the columns it
reads (``reads``; ``optional_reads``: used when present) and writes; nothing else is read, and the
runtime checks the chain against these declarations before it launches.

Rows are never dropped inside a stage: a stage that rejects a row appends ``"<stage>:<reason>"``
to the row's ``reject_reasons`` list, so that the writer can send it to ``rejected/`` and the
counts add up (in = kept + rejected, per stage too: ``first_rejections`` and ``funnel``).

An absent cell reaches a stage as None on both executors (Ray Data turns an all-None column into
float NaN; ``Stage.__call__`` and the runtime's output turn it back); test cells with ``missing``.
"""
from __future__ import annotations

from typing import Any, ClassVar, Iterable, NamedTuple

import numpy as np

Batch = dict[str, Any]

REJECT_COLUMN = "reject_reasons"


class Columns(NamedTuple):
    """A stage's declared columns: ``reads`` must be in the batch, ``optional_reads`` are used when
    present (a stage reads nothing else), ``writes`` are in its output."""

    reads: tuple[str, ...]
    optional_reads: tuple[str, ...]
    writes: tuple[str, ...]


class Stage:
    """Base class: subclasses set the class attributes and implement ``process``."""

    name: ClassVar[str] = "stage"
    # Instance-level where they depend on the constructor's arguments (see ``declared_columns``).
    reads: tuple[str, ...] = ()
    optional_reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    num_cpus: ClassVar[float] = 1.0
    num_gpus: ClassVar[float] = 0.0
    batch_size: ClassVar[int] = 64
    concurrency: ClassVar[int] = 1
    # An actor keeps state (a model) between batches; a plain task is rebuilt per batch.
    stateful: ClassVar[bool] = True
    # A driver stage runs in the driver, over rows in the run's order (after every other stage),
    # and rebuilds its state from the committed units on resume (``replay``): for decisions that
    # depend on earlier rows, like "first occurrence kept".
    driver: ClassVar[bool] = False

    @classmethod
    def declared_columns(cls, kwargs: dict[str, Any]) -> Columns:
        """The columns of a stage built with ``kwargs``, without building it (a model would load):
        the class attributes; a stage whose columns depend on ``kwargs`` overrides this and sets the
        same attributes on the instance in ``__init__``."""
        return Columns(tuple(cls.reads), tuple(cls.optional_reads), tuple(cls.writes))

    def replay(self, rows: list[dict]) -> None:
        """Driver stages: take in rows already committed (a resumed run), in run order."""

    def __call__(self, batch: Batch) -> Batch:
        missing = [c for c in self.reads if c not in batch]
        if missing:
            raise KeyError(f"stage {self.name!r} needs columns {missing}; the batch has {sorted(batch)}")
        batch = {k: nulls(v) for k, v in batch.items()}
        n = batch_len(batch)
        if REJECT_COLUMN not in batch:
            batch[REJECT_COLUMN] = [[] for _ in range(n)]
        else:
            batch[REJECT_COLUMN] = [list(r) if r is not None else [] for r in batch[REJECT_COLUMN]]
        out = self.process(batch)
        for c in self.writes:
            if c not in out:
                raise KeyError(f"stage {self.name!r} declared it writes {c!r} but did not")
        return out

    def process(self, batch: Batch) -> Batch:  # pragma: no cover - the hook subclasses fill
        raise NotImplementedError

    @classmethod
    def resources(cls) -> dict[str, float]:
        return {"num_cpus": cls.num_cpus, "num_gpus": cls.num_gpus}

    def reject(self, batch: Batch, i: int, reason: str) -> None:
        """Mark row ``i`` rejected by this stage with a short reason."""
        batch[REJECT_COLUMN][i].append(f"{self.name}:{reason}")


def batch_len(batch: Batch) -> int:
    for v in batch.values():
        return len(v)
    return 0


def is_kept(batch: Batch, i: int) -> bool:
    reasons = batch.get(REJECT_COLUMN)
    return reasons is None or not len(reasons[i])


def to_list(col: Any) -> list:
    return col.tolist() if isinstance(col, np.ndarray) else list(col)


# -- counts per stage, from the rows' reject_reasons ----------------------------------------------
def first_rejections(reasons: Iterable[list[str] | None]) -> dict[str, dict]:
    """Per stage: rows it rejected first (``rejected``) and its reasons on them (``reasons``: rows each).

    Stages append in chain order, so a row's first reason names the first stage that rejected it;
    later stages still score (and may reject) the row, but it no longer counts for them."""
    out: dict[str, dict] = {}
    for row in reasons:
        if not row:
            continue
        stage = row[0].partition(":")[0]
        whys = {why for s, _, why in (r.partition(":") for r in row) if s == stage}
        add_rejections(out, {stage: {"rejected": 1, "reasons": dict.fromkeys(whys, 1)}})
    return out


def add_rejections(total: dict[str, dict], part: dict[str, dict]) -> dict[str, dict]:
    """Add ``first_rejections`` counts ``part`` into ``total`` (of several units); returns ``total``."""
    for stage, c in part.items():
        t = total.setdefault(stage, {"rejected": 0, "reasons": {}})
        t["rejected"] += c["rejected"]
        for why, n in c["reasons"].items():
            t["reasons"][why] = t["reasons"].get(why, 0) + n
    return total


def funnel(rows_in: int, stages: Iterable[str], rejections: dict[str, dict]) -> dict[str, dict]:
    """Per stage, in chain order: ``in`` (rows no earlier stage rejected), ``rejected`` (rows it
    rejected first, with ``reasons``) and ``out`` = in - rejected, the next stage's in. A stage that
    rejected rows but is not in ``stages`` (not run by a runtime) comes last, by name."""
    order = list(dict.fromkeys(stages)) + sorted(set(rejections) - set(stages))
    out, left = {}, rows_in
    for s in order:
        c = rejections.get(s) or {"rejected": 0, "reasons": {}}
        out[s] = {"in": left, "out": left - c["rejected"], "rejected": c["rejected"],
                  "reasons": dict(sorted(c["reasons"].items()))}
        left -= c["rejected"]
    return out
def missing(v: Any) -> bool:
    """Whether a cell is absent, however the executor spells it: None, float NaN (Ray Data's
    all-None column), pandas NA / NaT."""
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    return type(v).__name__ in ("NAType", "NaTType")


def present(v: Any) -> bool:
    return not missing(v)


def nulls(col: Any) -> Any:
    """A column with its absent cells as None: Ray Data hands an all-None column over as float NaN."""
    if isinstance(col, np.ndarray) and col.dtype.kind == "f" and col.ndim == 1 and np.isnan(col).all():
        return [None] * len(col)
    return col
