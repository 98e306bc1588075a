"""Checkpoint references in configs: a local folder or a hub model id, checked before loading.

Errors are one line that names the config key and the value: a local path that does not exist,
a file where a folder is needed, a folder with no ``*.safetensors`` weights (pickle-based
``.bin``/``.pt``/``.ckpt`` weights are never loaded), or a hub id that is not in the local cache
while downloads are off (``HF_HUB_OFFLINE=1``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


class CheckpointError(ValueError):
    """A checkpoint a config names cannot be used; the message names the key and the fix."""


def looks_local(value: str) -> bool:
    """A path, not a hub id: absolute, ``./``, ``../``, ``~``, more than one ``/``, or existing."""
    return (value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1
            or not HUB_ID.match(value) or Path(value).expanduser().exists())


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def check_local_checkpoint(key: str, value: str | Path) -> Path:
    """The folder ``value`` names, which must exist and hold safetensors weights."""
    path = Path(value).expanduser()
    if not path.exists():
        raise CheckpointError(f"{key}={str(value)!r}: folder not found; give an existing checkpoint folder "
                              "(config.json + *.safetensors) or a model id")
    if not path.is_dir():
        raise CheckpointError(f"{key}={str(value)!r} is a file; give the checkpoint folder that holds it")
    if not (any(path.glob("*.safetensors")) or any(path.glob("*/*.safetensors"))):
        pickled = sorted(p.name for pat in PICKLE_WEIGHTS for p in path.glob(pat))
        why = f"only pickle weights ({', '.join(pickled[:3])}), which are never loaded" if pickled else "no weights"
        raise CheckpointError(f"{key}={str(value)!r}: {why}; the folder needs *.safetensors weights "
                              "(convert with model.save_pretrained(dir, safe_serialization=True))")
    return path


def check_checkpoint(key: str, value: str | Path) -> str:
    """``value`` ready for ``from_pretrained``: a checked local folder, or a hub id that can load."""
    s = str(value)
    if looks_local(s):
        return str(check_local_checkpoint(key, s))
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(s, "config.json"), str) and \
                not isinstance(try_to_load_from_cache(s, "model_index.json"), str):
            raise CheckpointError(f"{key}={s!r}: not a local folder and not in the Hugging Face cache, and "
                                  "downloads are off (HF_HUB_OFFLINE=1); give a local checkpoint folder")
    return s


def validate_checkpoint_field(key: str, value: str | None) -> str | None:
    """A pydantic field validator's body: a local path must exist with safetensors weights now
    (a ValueError whose message names the path; pydantic adds the key); a hub id is left to the loader."""
    if value is not None and looks_local(value):
        try:
            check_local_checkpoint(key, value)
        except CheckpointError as err:
            raise ValueError(str(err).split(": ", 1)[1]) from None
    return value
