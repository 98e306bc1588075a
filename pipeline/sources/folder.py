"""A folder of image files, searched recursively: id = relative path, label = parent folder.

Links and names: symlinked folders are not followed (no loops, no escape) and are recorded as
skipped; a symlinked file is read only when its target is inside the folder (else
``outside_root``; a loop or dangling link is ``unreadable``). Only regular files are read: a
FIFO, socket or device with an image name, and a folder with one (whose contents are still
walked), are skipped as ``not_regular``. A file name that is not valid
UTF-8 keeps the image: its id spells the bad bytes as ``\\xNN`` escapes.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Iterator

from .base import IMAGE_EXTENSIONS, MIN_SIDE, Entry, Source, not_regular

METADATA_FILE = "metadata.jsonl"


def id_of(rel: str) -> str:
    """A UTF-8 id for a relative path; bytes that are not UTF-8 become ``\\xNN`` escapes."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


class FolderSource(Source):
    """Every file with an image extension under ``root`` (hidden files and folders left out).

    An optional ``metadata.jsonl`` at the root (the HF imagefolder convention: one JSON object a
    line with ``file_name`` and ``caption``/``text`` and/or ``label``) adds captions and labels.
    """

    kind = "folder"

    def __init__(self, root: str | Path, extensions=IMAGE_EXTENSIONS, max_pixels: int | None = None,
                 min_side: int = MIN_SIDE):
        super().__init__(max_pixels, min_side)
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"folder source: {str(self.root)!r} is not a folder")
        self.extensions = frozenset(e.lower() for e in extensions)
        self.linked_folders: list[str] = []
        self.image_named_folders: list[str] = []

    def _image_name(self, name: str) -> bool:
        return not name.startswith(".") and os.path.splitext(name)[1].lower() in self.extensions

    def files(self) -> list[str]:
        """Relative posix paths of the candidate files, sorted (symlinked folders in ``linked_folders``,
        folders named like images in ``image_named_folders``)."""
        out, self.linked_folders, self.image_named_folders = [], [], []
        for dirpath, dirnames, filenames in os.walk(self.root):  # followlinks=False: links not walked
            for d in dirnames:
                rel = Path(dirpath, d).relative_to(self.root).as_posix()
                if not d.startswith(".") and os.path.islink(os.path.join(dirpath, d)):
                    self.linked_folders.append(rel)
                elif self._image_name(d):
                    self.image_named_folders.append(rel)
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            out += [Path(dirpath, f).relative_to(self.root).as_posix() for f in filenames if self._image_name(f)]
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

    def _problem(self, path: Path, real_root: Path) -> str | None:
        if not path.is_symlink():
            return None
        try:
            target = path.resolve(strict=True)
        except (RuntimeError, OSError) as err:  # RuntimeError: a loop (Python < 3.13)
            return f"unreadable: symlink loop or dangling link ({getattr(err, 'strerror', None) or err})"
        if not target.is_relative_to(real_root):
            return f"outside_root: symlink points to {id_of(str(target))!r}, outside the source folder"
        return None

    def entries(self) -> Iterator[Entry]:
        meta = self.metadata()
        real_root = self.root.resolve()
        found = [(id_of(rel), rel, None) for rel in self.files()]
        found += [(id_of(rel), rel, "symlinked_folder: links to folders are not followed (loops, escapes)")
                  for rel in self.linked_folders]
        found += [(id_of(rel), rel, not_regular(stat.S_IFDIR)) for rel in self.image_named_folders]
        for image_id, rel, problem in sorted(found):
            path = self.root / rel
            parent = Path(rel).parent
            rec = meta.get(rel, {})
            label = rec.get("label", parent.name if parent != Path(".") else None)
            caption = rec.get("caption", rec.get("text"))
            problem = problem or self._problem(path, real_root)
            yield Entry(image_id, path=path if problem else path.resolve(), problem=problem,
                        label=None if label is None else id_of(str(label)), caption=caption)
