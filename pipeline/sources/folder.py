"""A folder of image files, searched recursively: id = relative path, label = parent folder."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from .base import IMAGE_EXTENSIONS, Entry, Source

METADATA_FILE = "metadata.jsonl"


class FolderSource(Source):
    """Every file with an image extension under ``root`` (hidden files and folders left out).

    An optional ``metadata.jsonl`` at the root (the HF imagefolder convention: one JSON object a
    line with ``file_name`` and ``caption``/``text`` and/or ``label``) adds captions and labels.
    """

    kind = "folder"

    def __init__(self, root: str | Path, extensions=IMAGE_EXTENSIONS, max_pixels: int | None = None):
        super().__init__(max_pixels)
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"folder source: {str(self.root)!r} is not a folder")
        self.extensions = frozenset(e.lower() for e in extensions)

    def files(self) -> list[str]:
        """Relative posix paths of the candidate files, sorted."""
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in self.extensions:
                    out.append(Path(dirpath, f).relative_to(self.root).as_posix())
        return sorted(out)

    def metadata(self) -> dict[str, dict]:
        path = self.root / METADATA_FILE
        if not path.is_file():
            return {}
        meta = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                meta[Path(rec["file_name"]).as_posix()] = rec
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{n}: each line needs a JSON object with 'file_name' ({err})") from None
        return meta

    def entries(self) -> Iterator[Entry]:
        meta = self.metadata()
        for rel in self.files():
            parent = Path(rel).parent
            rec = meta.get(rel, {})
            label = rec.get("label", parent.name if parent != Path(".") else None)
            caption = rec.get("caption", rec.get("text"))
            yield Entry(rel, path=(self.root / rel).resolve(),
                        label=None if label is None else str(label), caption=caption)
