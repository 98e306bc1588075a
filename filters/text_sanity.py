"""Text sanity: empty, too long, stuttering (the same word again and again) or unprintable texts."""
from __future__ import annotations

import re

from filters.base import Filter, texts_of

_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


def sanity_problem(text: str | None, max_chars: int = 300, max_words: int = 50, max_repeat: int = 3,
                   min_distinct_ratio: float = 0.3) -> str | None:
    """The first problem of a text (``empty_text``, ``too_long``, ...), or None when it is sane."""
    if text is None or not text.strip():
        return "empty_text"
    if any(not (c.isprintable() or c in " ") for c in text):
        return "non_printable"
    words = [w.lower() for w in _WORDS.findall(text)]
    if not words:
        return "no_words"
    if len(text) > max_chars or len(words) > max_words:
        return "too_long"
    run = 1
    for a, b in zip(words, words[1:]):
        run = run + 1 if a == b else 1
        if run >= max_repeat:
            return "repeated_tokens"
    # A generator stuck in a loop ("the red the red the red ...") repeats without a run.
    if len(words) >= 8 and len(set(words)) / len(words) < min_distinct_ratio:
        return "repeated_tokens"
    return None


class TextSanityFilter(Filter):
    """Scores 1 when the forward (and reverse, if any) text is sane, else 0 with the problem as reason."""

    name = "text_sanity"
    score_field = "text_sanity"
    reads = ("modification_text",)
    optional_reads = Filter.optional_reads + ("reverse_text",)

    def _problem(self, row: dict) -> str | None:
        c = self.config
        kw = dict(max_chars=c.get("max_chars", 300), max_words=c.get("max_words", 50),
                  max_repeat=c.get("max_repeat", 3), min_distinct_ratio=c.get("min_distinct_ratio", 0.3))
        p = sanity_problem(texts_of(row), **kw)
        if p is None and row.get("reverse_text") is not None:
            p = sanity_problem(row["reverse_text"], **kw)
            p = p and f"reverse_{p}"
        return p

    def score_row(self, row: dict) -> float:
        return 0.0 if self._problem(row) else 1.0

    def keep(self, score: float, row: dict) -> bool:
        return score >= 1.0

    def reason_for(self, score: float, row: dict) -> str:
        return self._problem(row) or self.reason
