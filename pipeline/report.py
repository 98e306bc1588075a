"""The quality report of a dataset: ``report/index.html`` plus PNG plots, from the manifest and shards.

Counts per stage (a funnel) and rejection reasons come from manifest.json; score histograms and
sample grids read the kept (data/) and rejected (rejected/) shards with pyarrow, only the columns
they need.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.samples_figure import SAMPLE_COLUMNS, draw_samples
from pipeline.schema import SCORE_FIELDS
from pipeline.shards import MANIFEST

REPORT_DIR = "report"


def _shards(root: Path, kept: bool) -> list[Path]:
    return sorted((root / "data").rglob("*.parquet")) if kept else sorted((root / "rejected").rglob("*.parquet"))


def _read(paths: list[Path], columns: list[str], limit: int | None = None) -> list[dict]:
    rows: list[dict] = []
    for p in paths:
        have = set(pq.read_schema(p).names)
        t = pq.read_table(p, columns=[c for c in columns if c in have]).to_pylist()
        rows.extend(t)
        if limit is not None and len(rows) >= limit:
            return rows[:limit]
    return rows


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path.name


def funnel_table(manifest: dict) -> list[dict]:
    """Each step in run order with ``in``, ``out``, ``rejected`` and ``reasons``: the pool (images),
    mining (pairs; no in), then each stage of the chain (rows)."""
    sc = manifest.get("stage_counts") or {}
    steps = []
    if sc.get("pool"):
        p = sc["pool"]
        steps.append({"stage": "pool", "in": p.get("seen"), "out": p.get("kept"), "rejected": p.get("skipped"),
                      "reasons": {}})
    if sc.get("mining"):
        steps.append({"stage": "mining", "in": None, "out": sc["mining"].get("pairs"), "rejected": None,
                      "reasons": {}})
    return steps + [{"stage": s, **sc[s]} for s in manifest.get("stages") or [] if s in sc]


def plot_funnel(steps: list[dict], out: Path) -> str | None:
    """Horizontal bars, the first step on top: what went on (out) and what was rejected, together the in."""
    if not steps:
        return None
    plt = _plt()
    names = [s["stage"] for s in steps][::-1]
    kept = [s["out"] or 0 for s in steps][::-1]
    rejected = [s["rejected"] or 0 for s in steps][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.35 * len(steps)))
    ax.barh(names, kept, color="#4a7ab5", label="out")
    ax.barh(names, rejected, left=kept, color="#c0504d", label="rejected")
    for y, (k, r) in enumerate(zip(kept, rejected)):
        ax.annotate(f"{k} (-{r})" if r else str(k), (k + r, y), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
    ax.set_title("rows through each stage (pool: images, mining: pairs)", loc="left", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower right", bbox_to_anchor=(1, 1), frameon=False)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(0, 1.2 * max(max(k + r for k, r in zip(kept, rejected)), 1))  # room for the labels
    return _save(fig, out / "funnel.png")


def plot_reasons(reasons: dict[str, int], out: Path) -> str | None:
    if not reasons:
        return None
    plt = _plt()
    items = sorted(reasons.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.3 * len(items)))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#c0504d")
    ax.set_title("rejection reasons (a row may have several)")
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, out / "reject_reasons.png")


def plot_scores(kept: list[dict], rejected: list[dict], out: Path) -> list[str]:
    """One histogram per score field that any row has, kept and rejected overlaid."""
    plt = _plt()
    names = []
    for f in SCORE_FIELDS:
        k = [s[f] for s in kept if s and s.get(f) is not None]
        r = [s[f] for s in rejected if s and s.get(f) is not None]
        if not k and not r:
            continue
        fig, ax = plt.subplots(figsize=(4, 2.6))
        lo, hi = min(k + r), max(k + r)
        bins = [lo + (hi - lo) * i / 30 for i in range(31)] if hi > lo else 10
        ax.hist(k, bins=bins, alpha=0.6, label=f"kept ({len(k)})", color="#4a7ab5")
        ax.hist(r, bins=bins, alpha=0.6, label=f"rejected ({len(r)})", color="#c0504d")
        ax.set_title(f)
        ax.legend(fontsize=7)
        names.append(_save(fig, out / f"score_{f}.png"))
    return names


def plot_samples(rows: list[dict], out: Path, name: str, reasons: bool = False) -> str | None:
    """The sample figure (pipeline.samples_figure): reference, target, both negatives, the texts."""
    if not rows:
        return None
    return draw_samples(rows, out / name, reasons=reasons).name


def write_report(dataset_dir: str | Path, samples: int = 8) -> Path:
    """Write ``<dataset>/report/index.html`` and its PNGs; returns the index path."""
    root = Path(dataset_dir)
    manifest = json.loads((root / MANIFEST).read_text())
    out = root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    kept_paths, rej_paths = _shards(root, True), _shards(root, False)
    kept_scores = [r["scores"] for r in _read(kept_paths, ["scores"])]
    rej_scores = [r["scores"] for r in _read(rej_paths, ["scores"])]
    steps = funnel_table(manifest)
    funnel = plot_funnel(steps, out)
    reasons = plot_reasons(manifest.get("reject_reasons") or {}, out)
    hists = plot_scores(kept_scores, rej_scores, out)
    grid = plot_samples(_read(kept_paths, list(SAMPLE_COLUMNS), samples), out, "samples_kept.png")
    rgrid = plot_samples(_read(rej_paths, list(SAMPLE_COLUMNS) + ["reject_reasons"], samples), out,
                         "samples_rejected.png", reasons=True)
    index = out / "index.html"
    index.write_text(_html(manifest, steps, funnel, reasons, hists, grid, rgrid))
    return index


def _row(cells, tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def _table(rows, header: tuple = ()) -> str:
    head = _row(header, "th") if header else ""
    return "<table>" + head + "".join(_row(r) for r in rows) + "</table>"


def _html(manifest: dict, steps, funnel, reasons, hists, grid, rgrid) -> str:
    rows = manifest.get("rows") or {}
    img = lambda n: f'<img src="{html.escape(n)}">' if n else "<p>none</p>"  # noqa: E731
    blank = lambda v: "" if v is None else v  # noqa: E731 - mining has no rows in, the pool no reasons
    stage_rows = [(s["stage"], blank(s["in"]), blank(s["out"]), blank(s["rejected"]),
                   ", ".join(f"{k} {v}" for k, v in s["reasons"].items())) for s in steps]
    parts = [
        f"<h1>{html.escape(str(manifest.get('name', 'dataset')))}: quality report</h1>",
        f"<p>state {html.escape(str(manifest.get('state')))}, config {html.escape(str(manifest.get('config_hash')))}, "
        f"units {manifest.get('units_committed')}/{manifest.get('units_total')}</p>",
        "<h2>Rows</h2>", _table([("in", rows.get("in")), ("kept", rows.get("kept")), ("rejected", rows.get("rejected"))]
                               + [(f"kept in {k}", v) for k, v in (rows.get("per_split") or {}).items()]),
        "<h2>Counts per stage</h2>", _table(stage_rows, ("stage", "in", "out", "rejected", "reasons")), img(funnel),
        "<h2>Rejection reasons</h2>", _table(sorted((manifest.get("reject_reasons") or {}).items())), img(reasons),
        "<h2>Scores</h2>", "".join(img(h) for h in hists) or "<p>no scores</p>",
        "<h2>Samples: kept</h2>", img(grid), "<h2>Samples: rejected</h2>", img(rgrid),
    ]
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}td{padding:2px 10px}img{max-width:100%}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>cirforge report</title><style>{style}</style>" \
           f"</head><body>{''.join(parts)}</body></html>\n"
