"""Calibrate the embedding-path thresholds (photos: no scene graphs) from a labelled sample.

The labels file (docs/quality.md, "Calibrating the embedding path") has one row per labelled
triplet and any of three label columns, each ``good`` or ``bad`` (empty: not labelled):

  label                    the modification text (and reverse text) is right for the pair
  neg_text_aligned_label   the text-aligned negative satisfies the text and is not the target
  neg_image_aligned_label  the image-aligned negative is like the reference, the change not applied

JSONL or CSV: ``triplet_id`` plus labels; the images and texts come from ``--dataset`` (its kept
and rejected shards). Parquet: the same, or whole rows (images, texts, labels) with no dataset.
The thresholds that meet ``--min-precision`` and ``--min-recall`` on the sample with the widest
margin (texts: the combined score of filters/combined.py) are written as a config snippet. Run:
``python -m filters.calibrate --labels FILE [--dataset DIR] --out thresholds.yaml``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from pipeline.config import ConfigError

LABELS = ("label", "neg_text_aligned_label", "neg_image_aligned_label")
ROW_COLUMNS = ("triplet_id", "reference_image", "target_image", "modification_text", "reverse_text",
               "neg_text_aligned_image", "neg_image_aligned_image")
MIN_PER_CLASS = 5  # fewer good or bad labels than this: that part keeps its thresholds


@dataclass(frozen=True)
class Rule:
    """One threshold: ``min`` keeps score >= t (a margin: > t), ``max`` keeps score < t; ``off`` rejects nothing."""

    feature: str
    key: str
    keep: str
    off: float


RULES: dict[str, tuple[Rule, ...]] = {
    "label": (Rule("roundtrip", "filters.roundtrip.min_embedding_score", "min", -1.0),
              Rule("text_image_consistency", "filters.text_image_consistency.min_score", "min", -2.0),
              Rule("clip_direction", "filters.clip_direction.min_score", "min", -1.0),
              Rule("image_similarity", "filters.image_similarity.low", "min", -1.0),
              Rule("image_similarity", "filters.image_similarity.high", "max", 1.0)),
    "neg_text_aligned_label": (
        Rule("neg_text_aligned_margin", "negatives.text_margin", "min", -2.0),
        Rule("neg_text_aligned_tgt_sim", "negatives.text_aligned_max_target_similarity", "max", 1.01),
        Rule("neg_text_aligned_ref_sim", "negatives.text_aligned_max_reference_similarity", "max", 1.01),
        Rule("neg_text_aligned_target_lead", "negatives.text_aligned_min_target_lead", "min", -2.0)),
    "neg_image_aligned_label": (
        Rule("neg_image_aligned_margin", "negatives.image_margin", "min", -2.0),
        Rule("neg_image_aligned_ref_sim", "negatives.min_reference_similarity", "min", -1.0),
        Rule("neg_image_aligned_ref_sim", "negatives.image_aligned_max_reference_similarity", "max", 1.01),
        Rule("neg_image_aligned_tgt_sim", "negatives.image_aligned_max_target_similarity", "max", 1.01),
        Rule("neg_image_aligned_target_lead", "negatives.image_aligned_max_target_lead", "max", 2.0)),
}


def config_thresholds(ncfg, part: str) -> list[float]:
    """A NegativesConfig's thresholds in ``RULES[part]`` order: the rules then reject what the
    photo checks (generators/negatives/photo.py) reject (a margin or a minimum target lead is kept
    strictly above its threshold)."""
    from generators.negatives.photo import Cuts

    def above(t: float) -> float:
        return float(np.nextafter(t, np.inf))

    c = Cuts.of(ncfg)
    if part == "neg_text_aligned_label":
        return [above(ncfg.text_margin), c.text_target_duplicate, c.text_reference_duplicate,
                above(c.text_min_target_lead)]
    return [above(ncfg.image_margin), ncfg.min_reference_similarity, c.image_reference_duplicate,
            c.image_target_duplicate, c.image_max_target_lead]


# -- 1. the labelled rows -------------------------------------------------------------------
def read_table(path: Path) -> list[dict]:
    """The rows of a JSONL, CSV or Parquet file."""
    if not path.is_file():
        raise ConfigError(f"labels file {str(path)!r} not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{path} line {n}: not a JSON object ({err.msg})") from None
                if not isinstance(rows[-1], dict):
                    raise ConfigError(f"{path} line {n}: not a JSON object")
        return rows
    if suffix == ".csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise ConfigError(f"{path}: labels must be .jsonl, .csv or .parquet (got {suffix or 'no suffix'!r})")


def parse_label(value: Any, where: str) -> bool | None:
    """True for bad, False for good, None for not labelled."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None
    v = str(value).strip().lower()
    if v not in ("good", "bad"):
        raise ConfigError(f"{where}={value!r}: a label is good or bad (or empty: not labelled)")
    return v == "bad"


def dataset_rows(dataset: Path, ids: set[str]) -> dict[str, dict]:
    """The rows with these triplet ids from a dataset's kept and rejected shards."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not (dataset / "manifest.json").is_file():
        raise ConfigError(f"--dataset {str(dataset)!r}: no manifest.json (give a folder written by cirforge generate)")
    out: dict[str, dict] = {}
    for f in sorted((dataset / "data").glob("*/*.parquet")) + sorted((dataset / "rejected").glob("*.parquet")):
        t = pq.read_table(f, columns=list(ROW_COLUMNS))
        t = t.filter(pc.is_in(t["triplet_id"], value_set=pa_array(ids)))
        out.update((r["triplet_id"], r) for r in t.to_pylist())
    return out


def pa_array(ids: set[str]):
    import pyarrow as pa

    return pa.array(sorted(ids), pa.string())


def load_labelled(path: Path, dataset: Path | None = None) -> list[dict]:
    """Rows with images, texts and parsed labels (True = bad) in ``LABELS`` columns."""
    table = read_table(path)
    if not table:
        raise ConfigError(f"{path}: no rows")
    present = [c for c in LABELS if any(c in r for r in table)]
    if not present:
        raise ConfigError(f"{path}: no label column; expected one of {', '.join(LABELS)}")
    whole = all(r.get("reference_image") and r.get("target_image") and r.get("modification_text") for r in table)
    rows = []
    if whole:
        rows = [{c: r.get(c) for c in ROW_COLUMNS} for r in table]
    else:
        if any(not r.get("triplet_id") for r in table):
            raise ConfigError(f"{path}: every row needs a triplet_id (or its images and texts)")
        if dataset is None:
            raise ConfigError(f"{path} names triplets by id: pass --dataset DIR, the dataset they come from")
        found = dataset_rows(dataset, {str(r["triplet_id"]) for r in table})
        missing = sorted({str(r["triplet_id"]) for r in table} - set(found))
        if missing:
            raise ConfigError(f"{len(missing)} triplet ids of {path} are not in {dataset}: {', '.join(missing[:3])}")
        rows = [dict(found[str(r["triplet_id"])]) for r in table]
    for i, (row, r) in enumerate(zip(rows, table)):
        for c in LABELS:
            row[c] = parse_label(r.get(c), f"{path} row {i + 1} {c}")
    return rows


# -- 2. scores: the filters' own, and the negatives stage's margins ----------------------------
def embed_rows(rows: list[dict], embedder: Any, null_text: str = "", batch_size: int = 256) -> list[dict]:
    """The rows with the embed stage's columns, plus emb_neg_text_aligned / emb_neg_image_aligned."""
    from filters.embed_columns import EmbedColumnsStage, decode

    stage = EmbedColumnsStage(embedder=embedder, null_text=null_text)
    out = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        batch = stage({k: [r.get(k) for r in chunk] for k in (*stage.reads, *stage.optional_reads)})
        for j, r in enumerate(chunk):
            out.append({**r, **{c: batch[c][j] for c in stage.writes}})
    for kind in ("text_aligned", "image_aligned"):
        have = [i for i, r in enumerate(out) if r.get(f"neg_{kind}_image")]
        embs = embedder.embed_images([decode(out[i][f"neg_{kind}_image"]) for i in have]) if have else []
        for i, e in zip(have, embs):
            out[i][f"emb_neg_{kind}"] = np.asarray(e, np.float32)
    return out


def features(rows: list[dict]) -> dict[str, np.ndarray]:
    """Per row: the four embedding filters' scores, and what the negatives' photo checks read (the
    margins, the negative's cos to the reference and the target, its target lead); NaN where a row
    has no input."""
    from filters.clip_direction import ClipDirectionFilter
    from filters.image_similarity import ImageSimilarityFilter
    from filters.roundtrip import RoundtripFilter
    from filters.text_image_consistency import TextImageConsistencyFilter
    from generators.negatives import photo

    n = len(rows)
    batch = {k: [r.get(k) for r in rows] for k in rows[0]}
    batch["scores"] = [{} for _ in rows]
    for scene in ("reference_scene", "target_scene"):  # the embedding path: scene graphs hidden
        batch[scene] = [None] * n
    for cls in (RoundtripFilter, TextImageConsistencyFilter, ClipDirectionFilter, ImageSimilarityFilter):
        batch = cls()(batch)
    names = ["roundtrip", "text_image_consistency", "clip_direction", "image_similarity"]
    f = {k: np.array([s.get(k, np.nan) for s in batch["scores"]], np.float64) for k in names}
    for kind in ("text_aligned", "image_aligned"):
        for k in ("margin", "ref_sim", "tgt_sim", "target_lead"):
            f[f"neg_{kind}_{k}"] = np.full(n, np.nan)
    for i, r in enumerate(rows):
        if r.get("emb_reference") is None or r.get("emb_text") is None:
            continue
        a = photo.Anchors(*photo.normalize([r["emb_reference"], r["emb_target"], r["emb_text"]]))
        for kind, margin in (("text_aligned", photo.text_aligned_margin), ("image_aligned", photo.image_aligned_margin)):
            if r.get(f"emb_neg_{kind}") is not None:
                e = photo.normalize(r[f"emb_neg_{kind}"])
                f[f"neg_{kind}_margin"][i] = margin(e, a)
                f[f"neg_{kind}_ref_sim"][i] = float(e @ a.ref)
                f[f"neg_{kind}_tgt_sim"][i] = float(e @ a.tgt)
                f[f"neg_{kind}_target_lead"][i] = photo.target_lead(e, a)
    return f


# -- 3. thresholds ------------------------------------------------------------------------------
def rejects(f: dict[str, np.ndarray], rules: tuple[Rule, ...], thresholds: list[float]) -> np.ndarray:
    """Which rows the rules reject (a row a rule cannot score passes that rule)."""
    out = np.zeros(len(next(iter(f.values()))), bool)
    for rule, t in zip(rules, thresholds):
        x = f[rule.feature]
        with np.errstate(invalid="ignore"):
            out |= (x < t) if rule.keep == "min" else (x >= t)
    return out


def precision_recall(rejected: np.ndarray, bad: np.ndarray) -> tuple[float, float]:
    tp, fp, fn = int((rejected & bad).sum()), int((rejected & ~bad).sum()), int((~rejected & bad).sum())
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def _candidates(x: np.ndarray, cap: int = 96) -> np.ndarray:
    """Midpoints between neighbouring scores (at most ``cap``, spread by quantile)."""
    v = np.unique(x[np.isfinite(x)])
    mids = (v[1:] + v[:-1]) / 2
    return np.unique(np.quantile(mids, np.linspace(0, 1, cap))) if len(mids) > cap else mids


def rate_bound(k: int, n: int, confidence: float) -> float:
    """Lower confidence bound of a rate k / n (a precision, a recall; Wilson score, one-sided); 0 when
    n is 0. At confidence 0.5 it is the rate itself."""
    if n == 0:
        return 0.0
    z = NormalDist().inv_cdf(confidence)
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - spread) / (1 + z * z / n))


def choose(f: dict[str, np.ndarray], rules: tuple[Rule, ...], bad: np.ndarray, min_precision: float,
           min_recall: float = 0.8, confidence: float = 0.9, rounds: int = 6) -> list[float]:
    """Coordinate ascent to the thresholds that meet both goals with the widest margin: the larger
    the smaller of (precision bound - min_precision) and (recall bound - min_recall), both bounded
    below at ``confidence`` for the sample's size; ties to the higher sum. A few hundred labels
    measure a rate only to a few points and the choice among many thresholds flatters the sample,
    so an operating point at the edge of one goal (the highest recall at just the precision) lands
    under it on new rows; the middle of the region that meets both does not. Starts from every
    rule off and from the highest recall at the precision bound; keeps the better."""
    n_bad = max(int(bad.sum()), 1)

    def bounds(thr):
        rej = rejects(f, rules, thr)
        tp = int((rej & bad).sum())
        return rate_bound(tp, int(rej.sum()), confidence), rate_bound(tp, n_bad, confidence)

    def margin(thr):
        p, r = bounds(thr)
        return (min(p - min_precision, r - min_recall), p + r)

    def recall_at_precision(thr):
        p, r = bounds(thr)
        return (1, r, p) if p >= min_precision else (0, p, r)

    def ascend(thr, objective):
        best = objective(thr)
        for _ in range(rounds):
            changed = False
            for k, rule in enumerate(rules):
                for t in (rule.off, *_candidates(f[rule.feature])):
                    trial = thr[:k] + [round(float(t), 4)] + thr[k + 1:]
                    o = objective(trial)
                    if o > best:
                        best, thr, changed = o, trial, True
            if not changed:
                break
        return thr

    off = [r.off for r in rules]
    picks = [ascend(off, margin), ascend(ascend(off, recall_at_precision), margin)]
    return max(picks, key=margin)


def calibrate(rows: list[dict], f: dict[str, np.ndarray], min_precision: float = 0.9, min_recall: float = 0.8,
              confidence: float = 0.9, texts: str = "combined") -> dict:
    """Per labelled part: the chosen thresholds and the sample's figures. ``texts``: "combined" fits
    the combined score (filters/combined.py) over the four text scores and turns their own
    thresholds off; "rules": a threshold per filter."""
    out = {}
    for part, rules in RULES.items():
        labels = [r.get(part) for r in rows]
        idx = np.array([i for i, v in enumerate(labels) if v is not None], int)
        bad = np.array([labels[i] for i in idx], bool)
        if len(idx) == 0 or bad.sum() < MIN_PER_CLASS or (~bad).sum() < MIN_PER_CLASS:
            out[part] = {"skipped": f"{int(bad.sum())} bad and {int((~bad).sum())} good labels "
                                    f"(at least {MIN_PER_CLASS} of each are needed)"}
            continue
        sub = {k: v[idx] for k, v in f.items()}
        if part == "label" and texts == "combined":
            thresholds, rej = _combined(sub, bad, min_precision, min_recall, confidence)
        else:
            thr = choose(sub, rules, bad, min_precision, min_recall, confidence)
            thresholds, rej = {rule.key: t for rule, t in zip(rules, thr)}, rejects(sub, rules, thr)
        p, r = precision_recall(rej, bad)
        tp = int((rej & bad).sum())
        pb, rb = rate_bound(tp, int(rej.sum()), confidence), rate_bound(tp, int(bad.sum()), confidence)
        out[part] = {"labelled": len(idx), "bad": int(bad.sum()), "precision": round(p, 4), "recall": round(r, 4),
                     "precision_bound": round(pb, 4), "recall_bound": round(rb, 4),
                     "goal_met": pb >= min_precision and rb >= min_recall,  # else the nearest the rules get
                     "thresholds": thresholds}
    return out


def _combined(f: dict[str, np.ndarray], bad: np.ndarray, min_precision: float, min_recall: float,
              confidence: float) -> tuple[dict, np.ndarray]:
    """The combined text score fitted on the sample, its p(bad) threshold, the text filters' own
    thresholds off; and which sample rows it rejects."""
    from filters.combined import SCORES, as_config, fit, p_bad_array

    model = as_config(fit(np.stack([f[k] for k in SCORES], axis=1), bad.astype(float)), SCORES)
    p = {"p_bad": p_bad_array(model, f)}
    rule = Rule("p_bad", "filters.combined.max_p_bad", "max", 1.01)
    (t,) = choose(p, (rule,), bad, min_precision, min_recall, confidence)
    out = {r.key: r.off for r in RULES["label"]}
    out.update({f"filters.combined.{k}": v for k, v in model.items()})
    out["filters.combined.max_p_bad"] = t
    return out, rejects(p, (rule,), [t])


def snippet(result: dict) -> dict:
    """The chosen thresholds as a nested config mapping (a rule left off keeps its off value)."""
    tree: dict = {}
    for part in result.values():
        for key, t in part.get("thresholds", {}).items():
            *path, leaf = key.split(".")
            node = tree
            for p in path:
                node = node.setdefault(p, {})
            node[leaf] = t
    return tree


def write_snippet(result: dict, out: Path, header: str) -> str:
    import yaml

    text = "".join(f"# {line}\n" for line in header.splitlines()) + yaml.safe_dump(snippet(result), sort_keys=True)
    out.write_text(text)
    return text


# -- 4. the command -----------------------------------------------------------------------------
def load_sections(config: Path | None):
    """The run config's embedder, filters and negatives sections (defaults without a file), and its cache_dir."""
    from filters.config import FiltersConfig
    from generators.negatives.config import NegativesConfig
    from pipeline.config_base import read_yaml, validate_section
    from pipeline.config_mining import EmbedderConfig

    data = read_yaml(config) if config is not None else {}
    src = str(config or "defaults")
    return (validate_section(EmbedderConfig, data.get("embedder") or {}, f"{src} (embedder)"),
            validate_section(FiltersConfig, data.get("filters") or {}, f"{src} (filters)"),
            validate_section(NegativesConfig, data.get("negatives") or {}, f"{src} (negatives)"),
            Path(data.get("cache_dir", "cache")))


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, required=True, help="JSONL, CSV or Parquet of labelled triplets")
    ap.add_argument("--dataset", type=Path, help="dataset folder the labelled triplet ids come from")
    ap.add_argument("--config", type=Path, help="run config YAML: its embedder, cache_dir, filters, negatives")
    ap.add_argument("--cache-dir", type=Path, help="where the tiny CLIP is cached (default: the config's)")
    ap.add_argument("--min-precision", type=float, default=0.9, help="precision goal (of the rows rejected, bad)")
    ap.add_argument("--min-recall", type=float, default=0.8, help="recall goal (of the bad rows, rejected)")
    ap.add_argument("--confidence", type=float, default=0.9,
                    help="the sample's precision and recall are bounded below at this confidence (Wilson) "
                         "before they are held to the goals; 0.5: the sample's rates themselves")
    ap.add_argument("--texts", choices=("combined", "rules"), default="combined",
                    help="combined: one logistic-regression score over the four text filters' scores "
                         "(filters.combined); rules: a threshold per filter")
    ap.add_argument("--out", type=Path, required=True, help="YAML config snippet to write")
    a = ap.parse_args(argv)
    try:
        emb_cfg, fcfg, _, cache_dir = load_sections(a.config)
        rows = load_labelled(a.labels, a.dataset)
    except ConfigError as err:
        _fail(str(err))
    from pipeline.embedder import ClipEmbedder

    embedder = ClipEmbedder.from_config(emb_cfg, a.cache_dir or cache_dir)
    f = features(embed_rows(rows, embedder, fcfg.clip_direction.null_text))
    if not 0.5 <= a.confidence < 1:
        _fail(f"--confidence={a.confidence}: give a value in [0.5, 1) (0.9: the default)")
    result = calibrate(rows, f, a.min_precision, a.min_recall, a.confidence, a.texts)
    if not any("thresholds" in p for p in result.values()):
        _fail(f"nothing to calibrate: {json.dumps(result)}")
    header = (f"cirforge: embedding-path thresholds from {a.labels} ({len(rows)} rows), embedder {embedder.id},\n"
              f"goals precision >= {a.min_precision}, recall >= {a.min_recall} (their {a.confidence:.0%} lower "
              f"bounds on the sample), met with the widest margin:\n"
              + "\n".join(f"  {k}: {json.dumps({x: v for x, v in p.items() if x != 'thresholds'})}"
                          for k, p in result.items()))
    print(write_snippet(result, a.out, header))
    sets = " ".join(f"--set {k}={t}" for p in result.values() for k, t in p.get("thresholds", {}).items())
    print(f"wrote {a.out}; or pass: {sets}")
    return result


if __name__ == "__main__":
    main()
