"""ShapesWorld rows for filter tests (annotator texts: correct by construction)."""
from pipeline.shapesworld.sets.filters import make_rows


def batch_of(rows: list[dict]) -> dict:
    return {k: [r[k] for r in rows] for k in rows[0]}


def rows(n: int = 20, seed: int = 0) -> list[dict]:
    return make_rows(n, seed=seed, image_size=16)
