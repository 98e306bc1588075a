from filters.duplicates import DuplicatesFilter, normalize_text
from tests.filters.rows import batch_of, rows


def test_same_pair_twice_is_rejected_and_the_first_kept_across_batches():
    rs = rows(3)
    f = DuplicatesFilter()
    first = f(batch_of(rs))
    again = f(batch_of([dict(rs[0], triplet_id="x", reference_id="other")]))  # same image bytes, new ids
    assert first["reject_reasons"] == [[], [], []]
    assert again["reject_reasons"] == [["duplicates:same_pair"]] and again["scores"][0]["duplicate"] == 1.0


def test_one_text_for_too_many_pairs():
    rs = rows(5)
    for r in rs:
        r["modification_text"] = "Make it nicer."
    rs[4]["modification_text"] = "make it NICER"
    out = DuplicatesFilter(max_pairs_per_text=3)(batch_of(rs))
    assert [bool(r) for r in out["reject_reasons"]] == [False, False, False, True, True]
    assert out["reject_reasons"][3] == ["duplicates:text_reused"]
    assert [round(s["duplicate"], 2) for s in out["scores"]] == [0.0, 0.33, 0.67, 1.0, 1.33]
    assert normalize_text("Make it, nicer!") == "make it nicer"
