import pytest

from filters.text_sanity import TextSanityFilter, sanity_problem
from tests.filters.rows import batch_of, rows


@pytest.mark.parametrize("text,problem", [
    ("", "empty_text"), ("   ", "empty_text"), (None, "empty_text"),
    ("make the red circle blue", None),
    ("make the\x00 circle blue", "non_printable"),
    ("word " * 60, "too_long"),
    ("make the the the circle blue", "repeated_tokens"),
    ("the red the red the red the red the red", "repeated_tokens"),
    ("!!! ???", "no_words"),
])
def test_sanity_problems(text, problem):
    assert sanity_problem(text) == problem


def test_filter_scores_every_row_and_rejects_with_the_problem():
    rs = rows(4)
    rs[1]["modification_text"] = ""
    rs[2]["reverse_text"] = "go go go go"
    out = TextSanityFilter()(batch_of(rs))
    assert [s["text_sanity"] for s in out["scores"]] == [1.0, 0.0, 0.0, 1.0]
    assert out["reject_reasons"] == [[], ["text_sanity:empty_text"], ["text_sanity:reverse_repeated_tokens"], []]
