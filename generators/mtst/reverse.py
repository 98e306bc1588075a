"""Reverse texts for a benchmark's annotated triplets: the generator on (target, reference).

``write_reverse_texts`` reads a CIRR or FashionIQ folder's triplets of one split, writes what
changes from the target back to the reference, and saves the texts
1. in the MTST authors' JSON-lines layout beside the captions (``pipeline/cir_reverse.py``), which
   their PTHA loaders and ``cirforge generator train`` (as seed reverse texts) read, and
2. optionally as cirforge shards (``modification_text`` = the human caption, ``reverse_text`` the
   generated one), image files referenced by path unless ``embed_images``.
Triplets whose images are missing or corrupt are skipped with their reason and counted.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from generators.mtst.seed_sets import benchmark_seed_set
from pipeline.cir_reverse import (REVERSE_KEY, cirr_annotation_dir, cirr_reverse_file, fashioniq_reverse_file,
                                  write_jsonl)

CHUNK = 1024  # triplets whose images are decoded together (and one shard unit)


def write_reverse_texts(model_dir: str | Path, kind: str, root: str | Path, split: str = "train", *,
                        out: str | Path | None = None, infer=None, categories: list[str] | None = None,
                        embed_images: bool = False) -> dict:
    """Write reverse texts for ``split`` of the benchmark at ``root``; returns the counts and files."""
    from generators.mtst.text_stage import MTSTTextStage

    seeds = benchmark_seed_set(kind, root, split, categories=categories)
    names = seeds.names
    stage = MTSTTextStage(model_dir, infer)
    try:
        texts: dict[tuple[str, str], str] = {}
        for start in range(0, len(seeds.pairs), CHUNK):
            pairs = seeds.pairs[start:start + CHUNK]
            used = sorted({i for p in pairs for i in p[:2]})
            slot = {img: k for k, img in enumerate(used)}
            rev = stage.texts(seeds.load(used), [slot[p[1]] for p in pairs], [slot[p[0]] for p in pairs])
            texts.update({(names[p[0]], names[p[1]]): t for p, t in zip(pairs, rev)})
    finally:
        stage.teardown()
    files = _write_authors_layout(kind, Path(root), split, texts, seeds)
    record = {"kind": kind, "root": str(root), "split": split, "model": str(model_dir), "written": len(texts),
              "empty": sum(1 for t in texts.values() if not t), "skipped": len(seeds.skipped),
              "skipped_by_reason": seeds.summary()["skipped_by_reason"], "files": [str(f) for f in files]}
    if out is not None:
        record["shards"] = str(_write_shards(Path(out), seeds, names, texts, record, embed_images))
    return record


def _write_authors_layout(kind: str, root: Path, split: str, texts: dict, seeds) -> list[Path]:
    """The captions' records of ``split`` with ``modifier_generated`` added, one JSON a line."""
    if kind == "cirr":
        caps = json.loads((cirr_annotation_dir(root) / "captions" / f"cap.rc2.{split}.json").read_text())
        recs = [{**c, REVERSE_KEY: texts[(c["reference"], c["target_hard"])]} for c in caps
                if isinstance(c, dict) and (c.get("reference"), c.get("target_hard")) in texts]
        path = cirr_reverse_file(root, split)
        write_jsonl(path, recs)
        return [path]
    files = {n: Path(p).name for n, p in zip(seeds.names, seeds.images)}  # name -> file name with its extension
    written = []
    for f in sorted((root / "captions").glob(f"cap.*.{split}.json")):
        category = f.name[len("cap."):-len(f".{split}.json")]
        recs = [{**c, "candidate": files[c["candidate"]], "target": files[c["target"]], REVERSE_KEY: texts[key]}
                for c in json.loads(f.read_text()) if isinstance(c, dict)
                and (key := (c.get("candidate"), c.get("target"))) in texts]
        if recs:
            path = fashioniq_reverse_file(root, split, category)
            write_jsonl(path, recs)
            written.append(path)
    return written


def _write_shards(out: Path, seeds, names: list[str], texts: dict, record: dict, embed: bool) -> Path:
    """Seed triplets with their reverse texts as a cirforge dataset (one unit per CHUNK triplets)."""
    from pipeline import __version__
    from pipeline.schema import triplet_id
    from pipeline.shards import ShardWriter, finalize

    split = {"val": "val", "test1": "test", "test": "test"}.get(record["split"], "train")
    chash = hashlib.sha256(json.dumps({k: record[k] for k in ("kind", "root", "split", "model")},
                                      sort_keys=True).encode()).hexdigest()[:16]
    generator = f"mtst-reverse:{Path(record['model']).name}"
    writer = ShardWriter(out, embed_images=embed)
    units = [seeds.pairs[i:i + CHUNK] for i in range(0, len(seeds.pairs), CHUNK)]
    for u, pairs in enumerate(units):
        writer.expect(u, len(pairs))
        rows = []
        for r, t, fwd, _ in pairs:
            rev = texts[(names[r], names[t])]
            rows.append({
                "unit": u, "triplet_id": triplet_id(names[r], names[t], generator),
                "reference_id": names[r], "target_id": names[t],
                "reference_image": _cell(seeds.images[r], embed), "target_image": _cell(seeds.images[t], embed),
                "modification_text": fwd, "reverse_text": rev or None, "scores": {}, "split": split,
                "mining": "seed", "generator": generator, "config_hash": chash, "pipeline_version": __version__,
                "seed": 0, "reject_reasons": [] if rev else ["mtst_text:empty_reverse_text"],
            })
        writer.add(rows)
    finalize(out, {"reverse": record}, chash, units_total=len(units),
             stage_counts={"seed_set": {"triplets": len(seeds.pairs), "skipped": len(seeds.skipped)}})
    return out


def _cell(path, embed: bool) -> dict:
    return {"bytes": Path(path).read_bytes() if embed else None, "path": str(Path(path).resolve())}
