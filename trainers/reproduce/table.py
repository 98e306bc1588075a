"""The reproduction table: per-row summary over seeds, its markdown, and the block it fills in a doc."""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path
from typing import Any

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
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(), "platform": platform.platform()}


def write_doc(results: dict, path: Path, command: str) -> Path:
    """Put the table, with date, command, machine and timing, between the markers of ``path``."""
    m, d = results["machine"], results["data"]
    block = f"""{DOC_BEGIN}
Generated {results['date']} by `{command}` on {m['cores']} CPU cores ({m['cpu']}), Python {m['python']}.
Wall time {results['seconds'] / 60:.1f} min (data {results['data_seconds']:.0f} s); load average
{results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after (the machine is shared).

Data: {d['synthetic_train_rows']} synthetic train triplets (generator {', '.join(d['synthetic_generator'])},
{d['synthetic_rows_with_negatives']} with FBCIR negatives), {d['seed_set_rows']} seed-set triplets,
benchmark {d['benchmark_queries']} queries over {d['benchmark_gallery']} gallery images.
Mean ± sample std over training seeds {results['summary'][0]['seeds']}; R@K in percent.

{markdown_table(results['summary'])}
{DOC_END}"""
    text = path.read_text() if path.exists() else f"# Reproduction\n\n{DOC_BEGIN}\n{DOC_END}\n"
    if DOC_BEGIN not in text:
        text = text.rstrip() + f"\n\n{DOC_BEGIN}\n{DOC_END}\n"
    head, rest = text.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1] if DOC_END in rest else "\n"
    path.write_text(head + block + tail)
    return path
