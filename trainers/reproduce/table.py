"""The reproduction table: per-row summary over seeds, its markdown, and the block it fills in a doc."""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path
from typing import Any

from trainers.reproduce.claims import claims_markdown
from trainers.reproduce.config import ROWS

DOC_BEGIN = "<!-- reproduce:begin -->"
DOC_END = "<!-- reproduce:end -->"
COLUMNS = (("R@1", "R@1"), ("R@5", "R@5"), ("Rs@1", "subset R@1"), ("hard_R@1", "hard-case R@1"),
           ("focus_imbalance", "focus imbalance"))


def summarize(results: list[dict]) -> list[dict]:
    """Per row: mean and sample std over seeds of each column."""
    out = []
    for row in ROWS:
        runs = [r for r in results if r["row"] == row.name]
        if not runs:
            continue
        entry: dict[str, Any] = {"row": row.name, "seeds": [r["seed"] for r in runs]}
        for key, _ in COLUMNS:
            vals = [float(r["metrics"].get(key, float("nan"))) for r in runs]
            entry[key] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                          "values": vals}
        out.append(entry)
    return out


def markdown_table(summary: list[dict]) -> str:
    """The summary as a markdown table: mean ± std per column, R@K in percent."""
    head = "| row | " + " | ".join(name for _, name in COLUMNS) + " |"
    lines = [head, "|---|" + "---:|" * len(COLUMNS)]
    for s in summary:
        cells = []
        for key, _ in COLUMNS:
            m, sd = s[key]["mean"], s[key]["std"]
            cells.append(f"{m:.3f} ± {sd:.3f}" if key == "focus_imbalance" else f"{m:.1f} ± {sd:.1f}")
        lines.append(f"| {s['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict:
    """The CPU, cores, Python and platform the table was made on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(), "platform": platform.platform(),
            "isa": _isa(), "torch_isa": _torch_isa()}


def _isa() -> str:
    """The SIMD flags that decide matmul speed (AVX2, AVX-512 ...), from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                simd = [f for f in flags if f.startswith(("avx", "fma", "amx"))]
                return " ".join(simd) + ("" if any(f.startswith("avx512") for f in flags) else " (no AVX-512)")
    except OSError:
        pass
    return "unknown"


def _torch_isa() -> str:
    try:
        import torch

        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - an old torch without it
        return "unknown"


def _load(avg) -> str:
    return " / ".join(f"{x:.1f}" for x in avg)


def _oracle(d: dict) -> str:
    if "oracle_train_rows" not in d:
        return ""
    return f"; the oracle row's {d['oracle_train_rows']} triplets ({', '.join(d['oracle_generator'])}) are the same families"


def write_doc(results: dict, path: Path, command: str) -> Path:
    """Put the table, with date, command, machine and timing, between the markers of ``path``."""
    m, d = results["machine"], results["data"]
    block = f"""{DOC_BEGIN}
Generated {results['date']} by `{command}` on {m['cores']} CPU cores ({m['cpu']}; torch kernels
{m.get('torch_isa', 'n/a')}), Python {m['python']}.
Wall time {results['seconds'] / 60:.1f} min (data {results['data_seconds']:.0f} s); load average
{_load(results['load_before'])} before, {_load(results['load_after'])} after (the machine is shared).

Load average is over 1, 5 and 15 min; the CPU flags: {m.get('isa', 'n/a')}.

Data: {d['synthetic_train_rows']} synthetic train triplets (generator {', '.join(d['synthetic_generator'])},
{d['synthetic_rows_with_negatives']} with FBCIR negatives){_oracle(d)}, {d['seed_set_rows']} seed-set triplets,
benchmark {d['benchmark_queries']} queries over {d['benchmark_gallery']} gallery images.
Mean ± sample std over training seeds {results['summary'][0]['seeds']}; R@K in percent.

{markdown_table(results['summary'])}

Claims, each a difference between two rows paired over training seeds (one-sided paired t-test,
3 seeds: 2 degrees of freedom; "holds" at p < 0.05):

{claims_markdown(results.get('claims', []))}
{DOC_END}"""
    text = path.read_text() if path.exists() else f"# Reproduction\n\n{DOC_BEGIN}\n{DOC_END}\n"
    if DOC_BEGIN not in text:
        text = text.rstrip() + f"\n\n{DOC_BEGIN}\n{DOC_END}\n"
    head, rest = text.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1] if DOC_END in rest else "\n"
    path.write_text(head + block + tail)
    return path
