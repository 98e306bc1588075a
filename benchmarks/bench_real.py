"""Real-size smoke benchmark (GPU): BLIP-2 ViT-g + Q-Former at their published sizes, random weights.

Checks that the real architecture runs through every training stage and evaluation code path, and
reports step time and peak memory. Weights are random (speed does not depend on their values).
Prints one JSON line per stage; figures in docs/benchmarks.md.

    python benchmarks/bench_real.py --batch 32
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import Blip2Config, Blip2ForImageTextRetrieval

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.config import LossConfig, ModelConfig  # noqa: E402
from trainers.data import TripletBatch  # noqa: E402
from trainers.factory import _init_query_tokens, _wrap  # noqa: E402
from trainers.objectives import stage_losses  # noqa: E402


def real_blip2_config() -> Blip2Config:
    """blip2-itm-vit-g / blip2-opt-2.7b sizes: ViT-g/14 (1408 x 39) at 224 px, Q-Former 768 x 12, 32 queries."""
    cfg = Blip2Config(qformer_config={"use_qformer_text_input": True}, image_text_hidden_size=256)
    cfg.vision_config.initializer_range = 0.02
    return cfg


def fake_batch(b: int, size: int, text_len: int, vocab: int, device) -> TripletBatch:
    g = torch.Generator().manual_seed(0)
    px = lambda *s: torch.randn(*s, 3, size, size, generator=g)  # noqa: E731
    ids = torch.randint(5, vocab, (b, text_len), generator=g)
    ids[:, 0] = 101
    mask = torch.ones(b, text_len, dtype=torch.long)
    return TripletBatch(ids=[str(i) for i in range(b)], reference=px(b), target=px(b), input_ids=ids,
                        attention_mask=mask, reverse_ids=ids.flip(1), reverse_mask=mask,
                        has_reverse=torch.ones(b, dtype=torch.bool), negatives=px(b, 2),
                        neg_mask=torch.ones(b, 2, dtype=torch.bool)).to(device)


def run(kind: str, stages: list[str], batch: int, steps: int, device) -> list[dict]:
    torch.manual_seed(0)
    hf = Blip2ForImageTextRetrieval(real_blip2_config())
    _init_query_tokens(hf)
    model = _wrap(hf, ModelConfig(kind=kind, size="real", checkpoint="random")).to(device)
    data = fake_batch(batch, 224, 32, hf.config.qformer_config.vocab_size, device)
    out = []
    for stage in stages:
        model.set_stage(stage)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(steps + 1):  # the first step warms up kernels and is not timed
            torch.cuda.synchronize(device)
            t = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss, parts = stage_losses(model, data, stage, LossConfig())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t)
        out.append({"kind": kind, "stage": stage, "batch": batch, "step_s": round(sum(times[1:]) / steps, 3),
                    "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 1),
                    "trainable_m": round(sum(p.numel() for p in params) / 1e6, 1),
                    "loss": round(float(loss.detach()), 3), **{k: round(v, 3) for k, v in parts.items()}})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    device = torch.device("cuda")
    run("qformer_cir", ["q2t", "ptha"], args.batch, args.steps, device)
    run("detailfusion", ["df_di", "df_joint", "df_compositor"], args.batch, args.steps, device)


if __name__ == "__main__":
    main()
