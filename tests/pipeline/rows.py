"""Hand-made contract rows for writer and runtime tests."""
import datetime as dt
import io

from PIL import Image

from pipeline.schema import triplet_id


def png(color=(255, 0, 0), size=8, noise: bytes = b"") -> bytes:
    img = Image.new("RGB", (size, size), color)
    if noise:
        img.frombytes(noise[: size * size * 3].ljust(size * size * 3, b"\0"))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def row(unit: int, i: int, split: str = "train", rejected: bool = False, image: bytes | None = None) -> dict:
    img = image or png((i % 256, 0, 0))
    r = {
        "unit": unit, "triplet_id": triplet_id(f"r{unit}-{i}", f"t{unit}-{i}", "g"),
        "reference_id": f"r{unit}-{i}", "target_id": f"t{unit}-{i}",
        "reference_image": {"bytes": img, "path": f"r{i}.png"}, "target_image": {"bytes": img, "path": None},
        "modification_text": f"make it {i}", "reverse_text": f"undo {i}", "scores": {"roundtrip": 0.5},
        "split": split, "mining": "label", "generator": "g", "config_hash": "h", "pipeline_version": "0",
        "seed": 7, "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    }
    if rejected:
        r["reject_reasons"] = ["sanity:empty_text"]
    return r
