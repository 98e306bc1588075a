"""The seed papers' claims, each tested on the table's runs: the difference between two rows, paired
over training seeds (same seed, same data order), with its spread and a one-sided paired t-test."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """``better`` beats ``base`` on ``metric`` (``sign`` -1: lower is better); ``guard``: a metric that
    must not get significantly worse at the same time."""

    name: str
    base: str
    better: str
    metric: str
    sign: int = 1
    guard: str | None = None


CLAIMS = (
    Claim("synthetic pretraining (generator texts) beats the seed set alone (MTST)", "seed set only",
          "+ synthetic pretraining", "R@1"),
    Claim("oracle gap: annotator texts beat the generator's", "+ synthetic pretraining",
          "+ synthetic pretraining (annotator texts)", "R@1"),
    Claim("the reverse-text term L_p2p raises R@1 (PTHA)", "+ synthetic pretraining", "+ PTHA reverse", "R@1"),
    Claim("FBCIR negatives raise hard-case R@1 without lowering R@1", "+ PTHA reverse", "+ FBCIR negatives",
          "hard_R@1", guard="R@1"),
    Claim("DetailFusion raises subset R@1 (DI branch)", "+ FBCIR negatives", "DetailFusion", "Rs@1"),
    Claim("DetailFusion balances focus (lower imbalance)", "+ FBCIR negatives", "DetailFusion",
          "focus_imbalance", sign=-1),
)


def paired(results: list[dict], base: str, better: str, metric: str) -> list[float]:
    """Per training seed: metric(better) - metric(base), over the seeds both rows have."""
    by = {(r["row"], r["seed"]): r["metrics"].get(metric, float("nan")) for r in results}
    seeds = sorted({s for (row, s) in by if row == base} & {s for (row, s) in by if row == better})
    return [float(by[(better, s)]) - float(by[(base, s)]) for s in seeds]


def one_sided_p(diffs: list[float]) -> float:
    """P(mean difference <= 0) by a one-sided paired t-test (nan with fewer than two seeds)."""
    n = len(diffs)
    if n < 2:
        return float("nan")
    sd = statistics.stdev(diffs)
    if sd == 0:
        return 0.0 if statistics.fmean(diffs) > 0 else 1.0
    t = statistics.fmean(diffs) / (sd / math.sqrt(n))
    try:
        from scipy.stats import t as student
    except ImportError:  # normal approximation: optimistic with 3 seeds, said so in the table
        return 0.5 * math.erfc(t / math.sqrt(2))
    return float(student.sf(t, n - 1))


def test_claims(results: list[dict], alpha: float = 0.05) -> list[dict]:
    """Each claim whose rows are in ``results``: differences, mean ± std, p-value, holds or not."""
    rows = {r["row"] for r in results}
    out = []
    for c in CLAIMS:
        if not {c.base, c.better} <= rows:
            continue
        d = [c.sign * x for x in paired(results, c.base, c.better, c.metric)]
        entry = {"claim": c.name, "base": c.base, "better": c.better, "metric": c.metric, "sign": c.sign,
                 "diffs": d, "mean": statistics.fmean(d), "std": statistics.stdev(d) if len(d) > 1 else 0.0,
                 "p": one_sided_p(d)}
        holds = entry["p"] < alpha
        if c.guard:
            g = paired(results, c.base, c.better, c.guard)
            entry["guard"] = {"metric": c.guard, "mean": statistics.fmean(g), "p_lower": one_sided_p([-x for x in g])}
            holds = holds and not entry["guard"]["p_lower"] < alpha
        entry["holds"] = bool(holds)
        out.append(entry)
    return out


def claims_markdown(claims: list[dict]) -> str:
    """The claims as a markdown table (R@K differences in points; focus in imbalance units)."""
    lines = ["| claim | rows compared | metric | difference (per seed) | mean ± std | p (one-sided) | holds here |",
             "|---|---|---|---|---:|---:|---|"]
    for c in claims:
        fmt = "{:+.3f}" if c["metric"] == "focus_imbalance" else "{:+.1f}"
        per = ", ".join(fmt.format(x) for x in c["diffs"])
        guard = ""
        if "guard" in c:
            guard = f"; {c['guard']['metric']} {c['guard']['mean']:+.1f} (p lower {c['guard']['p_lower']:.2f})"
        lines.append(f"| {c['claim']} | {c['better']} vs {c['base']} | {c['metric']}"
                     f"{' (lower better)' if c['sign'] < 0 else ''} | {per} | "
                     f"{fmt.format(c['mean'])} ± {abs(c['std']):.{3 if c['metric'] == 'focus_imbalance' else 1}f} | "
                     f"{c['p']:.3f}{guard} | {'yes' if c['holds'] else 'no'} |")
    return "\n".join(lines)
