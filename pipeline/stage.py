"""The one shape every stage has: a callable class over column batches, with declared resources.

A stage never imports Ray. Its constructor loads what it needs once; ``__call__(batch)`` maps a
column batch (``dict[str, list | numpy.ndarray]``) to a column batch. The runtime turns it into a
Ray Data ``map_batches`` operator; a test calls it directly.

Rows are never dropped inside a stage: a stage that rejects a row appends ``"<stage>:<reason>"``
to the row's ``reject_reasons`` list, so that the writer can send it to ``rejected/`` and the
counts add up (in = kept + rejected).

An absent cell reaches a stage as None on both executors (Ray Data turns an all-None column into
float NaN; ``Stage.__call__`` and the runtime's output turn it back); test cells with ``missing``.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

Batch = dict[str, Any]

REJECT_COLUMN = "reject_reasons"


class Stage:
    """Base class: subclasses set the class attributes and implement ``process``."""

    name: ClassVar[str] = "stage"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
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
