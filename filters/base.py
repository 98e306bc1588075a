"""The filter family: a base class owns the loop (scores, reasons); a filter fills one hook.

A filter scores every row (rejected ones too, so the report can show both histograms), writes its
score into ``scores[<score_field>]`` and rejects a row whose score fails its threshold with
``<name>:<reason>``. Rows are never dropped: in = kept + rejected.
"""
from __future__ import annotations

from typing import Any, ClassVar

from pipeline.shapesworld.scene import SCENE_COLUMNS, scenes_of  # noqa: F401 (the filters' row helpers)
from pipeline.stage import Batch, Stage, batch_len, to_list

# Columns the embed stage (filters/embed_columns.py) adds; filters read them when present.
EMB_REFERENCE, EMB_TARGET = "emb_reference", "emb_target"
EMB_TEXT_DIRECTION, EMB_REVERSE_DIRECTION = "emb_text_direction", "emb_reverse_direction"
EMB_TEXT = "emb_text"
# ShapesWorld rows: the filters check these exactly when present.


class Filter(Stage):
    """Base class: subclasses set name, score_field, reason and implement ``score_rows``."""

    score_field: ClassVar[str] = ""
    reason: ClassVar[str] = "failed"
    optional_reads: tuple[str, ...] = ("scores",)  # the loop adds its score to the row's scores so far
    writes = ("scores",)
    num_cpus = 0.5
    batch_size = 256
    stateful = False

    def __init__(self, **config: Any):
        self.config = config

    # -- the hooks ---------------------------------------------------------------------------
    def score_rows(self, rows: list[dict]) -> list[float | None]:
        """One score per row; None means 'not scored' (no input for it) and keeps the row."""
        return [self.score_row(r) for r in rows]

    def score_row(self, row: dict) -> float | None:  # pragma: no cover - filled by subclasses
        raise NotImplementedError

    def keep(self, score: float, row: dict) -> bool:
        return score >= self.config.get("min_score", float("-inf"))

    def reason_for(self, score: float, row: dict) -> str:
        """The reason string of a failed row (a filter with several failure kinds overrides it)."""
        return self.reason

    # -- the loop ----------------------------------------------------------------------------
    def process(self, batch: Batch) -> Batch:
        n = batch_len(batch)
        # Rows of the declared columns only: a filter that reads another column sees None (tests catch it).
        cols = {k: to_list(batch[k]) for k in (*self.reads, *self.optional_reads) if k in batch}
        rows = [{k: v[i] for k, v in cols.items()} for i in range(n)]
        scores = self.score_rows(rows)
        out_scores = []
        for i, (row, s) in enumerate(zip(rows, scores)):
            sc = dict(row.get("scores") or {})
            if s is not None:
                sc[self.score_field] = float(s)
                if not self.keep(s, row):
                    self.reject(batch, i, self.reason_for(s, row))
            out_scores.append(sc)
        batch["scores"] = out_scores
        return batch


def texts_of(row: dict, column: str = "modification_text") -> str:
    v = row.get(column)
    return "" if v is None else str(v)


def embedding(row: dict, column: str):
    """The row's embedding vector in ``column`` as float32 numpy, or None when absent."""
    import numpy as np

    v = row.get(column)
    return None if v is None else np.asarray(v, dtype=np.float32)


def cosine(a, b) -> float:
    import numpy as np

    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return 0.0 if na == 0 or nb == 0 else float(np.dot(a, b) / (na * nb))
