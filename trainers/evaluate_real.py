"""A model on a real benchmark split: encode the gallery and the queries, rank, and either score the
official protocol (val) or write the test-server files (test); metrics and files land in ``out_dir``."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from trainers import protocols
from trainers.benchmarks import BenchSplit, read
from trainers.config import EvalConfig
from trainers.encode import encode_images, encode_queries, score_chunks
from trainers.factory import image_size, load_model, text_length

# The columns `cirforge evaluate` prints, per benchmark (all keys land in the JSON).
TABLE = {"cirr": ("R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2", "Rsubset@3", "Avg"),
         "fashioniq": None, "circo": ("mAP@5", "mAP@10", "mAP@25", "mAP@50")}


@torch.no_grad()
def rank_split(model, split: BenchSplit, cfg: EvalConfig, tokenizer=None) -> dict:
    """Top-50 names per query (and CIRR's subset rankings) for ``model`` on ``split``."""
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    was_training = model.training
    model.eval()
    size, names = image_size(model), list(split.images)
    kw = dict(batch=cfg.batch_size, workers=cfg.num_workers)
    gallery = encode_images(model, [split.images[n] for n in names], size, **kw)
    qs = split.queries
    query = encode_queries(model, [split.images[q.reference_id] for q in qs], [q.text for q in qs], tokenizer, size,
                           max_len=text_length(model, cfg.max_text_len), **kw)
    scores = score_chunks(model, query, gallery, cfg.batch_size)
    model.train(was_training)
    return protocols.rankings(split, names, scores)


def evaluate_split(model, split: BenchSplit, cfg: EvalConfig = EvalConfig(), out_dir: str | Path | None = None,
                   tokenizer=None) -> dict:
    """Metrics (a split with targets) or validated submission files (a test split); written to ``out_dir``."""
    if isinstance(model, (str, Path)):
        model = load_model(model)
    ranks = rank_split(model, split, cfg, tokenizer)
    result = {"benchmark": split.kind, "split": split.split, "root": str(split.root), "counts": split.counts()}
    out = Path(out_dir) if out_dir is not None else None
    if split.has_targets:
        result["metrics"] = protocols.metrics(split, ranks)
    else:
        files = protocols.submissions(split, ranks)
        kinds = {"cirr_recall.json": "recall", "cirr_recall_subset.json": "recall_subset"}
        for name, content in files.items():
            protocols.validate_submission(content, split, kinds.get(name, "circo"))
        result["submission_files"] = sorted(files)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            for name, content in files.items():
                (out / name).write_text(json.dumps(content))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def evaluate_folder(model, root: str | Path, split: str, kind: str | None = None, cfg: EvalConfig = EvalConfig(),
                    out_dir: str | Path | None = None) -> dict:
    """``evaluate_split`` on one split of a benchmark folder."""
    return evaluate_split(model, read(root, split, kind), cfg, out_dir)


def table(result: dict) -> str:
    """The result as a Markdown table (metrics in percent), or the list of files written."""
    head = f"{result['benchmark']} {result['split']}: {result['counts']['queries']} queries, " \
           f"{result['counts']['images']} images, skipped {result['counts']['skipped'] or 'none'}"
    if "metrics" not in result:
        return f"{head}\nwrote test-server files: {', '.join(result['submission_files'])}"
    m = result["metrics"]
    keys = TABLE[result["benchmark"]] or [k for k in m if "R@" in k or k == "average"]
    return "\n".join([head, "", "| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys),
                      "| " + " | ".join(f"{m[k]:.2f}" for k in keys) + " |"])
