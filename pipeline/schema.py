"""The triplet shard contract (v1): column names, Arrow types and the HF ``datasets`` features.

One source of truth: every other module takes column names from here. Changing anything here is
a contract change: bump ``CONTRACT_VERSION`` and note it in docs/shard-contract.md.
"""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa

CONTRACT_VERSION = "1.1"

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

# Scores: one nullable float per filter. A filter not run leaves its field null.
SCORE_FIELDS = (
    "clip_direction",
    "image_similarity",
    "text_image_consistency",
    "roundtrip",
    "text_sanity",
    "duplicate",
    "neg_text_aligned_margin",
    "neg_image_aligned_margin",
    "combined_p_bad",
)
SCORES_STRUCT = pa.struct([(f, pa.float32()) for f in SCORE_FIELDS])

IMAGE_COLUMNS = (
    "reference_image",
    "target_image",
    "neg_text_aligned_image",
    "neg_image_aligned_image",
)

# (name, arrow type, nullable, description). Order is the column order on disk.
COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    ("triplet_id", pa.string(), False, "stable hash of (reference_id, target_id, generator)"),
    ("reference_id", pa.string(), False, "id of the reference image in the source pool"),
    ("target_id", pa.string(), False, "id of the target image in the source pool"),
    ("reference_image", IMAGE_STRUCT, False, "HF Image layout: bytes embedded, or path only"),
    ("target_image", IMAGE_STRUCT, False, "HF Image layout"),
    ("modification_text", pa.string(), False, "forward text: what changes from reference to target"),
    ("reverse_text", pa.string(), True, "text from target back to reference (MTST reverse triplet)"),
    ("neg_text_aligned_image", IMAGE_STRUCT, True, "FBCIR negative that satisfies the text, not the reference"),
    ("neg_image_aligned_image", IMAGE_STRUCT, True, "FBCIR negative close to the reference, text not applied"),
    ("neg_text_aligned_source", pa.string(), True, "'mined' or 'edited'"),
    ("neg_image_aligned_source", pa.string(), True, "'mined' or 'edited'"),
    ("neg_text_aligned_instruction", pa.string(), True, "edit instruction when edited"),
    ("neg_image_aligned_instruction", pa.string(), True, "edit instruction when edited"),
    ("scores", SCORES_STRUCT, False, "one float per filter, null when not run"),
    ("split", pa.string(), False, "train / val / test"),
    ("mining", pa.string(), False, "how the pair was found: similarity, label, caption, seed"),
    ("generator", pa.string(), False, "model id + revision that wrote the texts"),
    ("editor", pa.string(), True, "model id + revision that made the edits"),
    ("config_hash", pa.string(), False, "sha256 (16 hex) of the resolved run config"),
    ("pipeline_version", pa.string(), False, "cirforge version"),
    ("seed", pa.int64(), False, "seed of the unit that made this row"),
    ("created_at", pa.timestamp("us", tz="UTC"), False, "when the unit was written (not deterministic)"),
    ("reference_scene", pa.string(), True, "ShapesWorld scene graph JSON (ground truth), else null"),
    ("target_scene", pa.string(), True, "ShapesWorld scene graph JSON (ground truth), else null"),
)

COLUMN_NAMES = tuple(c[0] for c in COLUMNS)
REQUIRED_COLUMNS = frozenset(c[0] for c in COLUMNS if not c[2])
REJECTED_EXTRA = (("reject_reasons", pa.list_(pa.string()), False, "'stage:reason' for each failed check"),)


def _hf_feature(t: pa.DataType) -> dict:
    if t == IMAGE_STRUCT:
        return {"_type": "Image"}
    if pa.types.is_struct(t):
        return {t.field(i).name: _hf_feature(t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_list(t):
        return {"feature": _hf_feature(t.value_type), "_type": "List"}
    if pa.types.is_timestamp(t):
        return {"dtype": f"timestamp[{t.unit}, tz={t.tz}]" if t.tz else f"timestamp[{t.unit}]", "_type": "Value"}
    name = {"string": "string", "int64": "int64", "float": "float32", "double": "float64", "bool": "bool"}[str(t)]
    return {"dtype": name, "_type": "Value"}


def arrow_schema(rejected: bool = False) -> pa.Schema:
    """The Arrow schema of a kept shard (or a rejected one), with HF features in its metadata."""
    cols = COLUMNS + (REJECTED_EXTRA if rejected else ())
    # Every field is nullable on disk: HF datasets ignores its features for non-nullable fields.
    # Required columns are enforced when rows are written (pipeline.shards.rows_to_table).
    fields = [pa.field(n, t, nullable=True, metadata={"description": d}) for n, t, _, d in cols]
    features = {n: _hf_feature(t) for n, t, _, _ in cols}
    meta = {
        "huggingface": json.dumps({"info": {"features": features}}),
        "cirforge": json.dumps({"contract_version": CONTRACT_VERSION}),
    }
    return pa.schema(fields, metadata=meta)


def triplet_id(reference_id: str, target_id: str, generator: str) -> str:
    """Stable id of a triplet: the same pair and generator always give the same id."""
    h = hashlib.sha256(f"{reference_id}\x1f{target_id}\x1f{generator}".encode()).hexdigest()
    return h[:24]
