"""Seeds derived from (run seed, names): every random choice in a run comes through here."""
from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from the run seed and any ids (same parts, same seed, any machine)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


def unit_float(*parts: object) -> float:
    """A stable number in [0, 1) from the parts (used for split assignment)."""
    return derive_seed(*parts) / float(1 << 63)
