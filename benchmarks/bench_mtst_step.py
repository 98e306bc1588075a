"""MTST training step cost on CPU: ms per pair step and per caption step for model variants,
against the tiny defaults measured in the same run (the ratios are what a variant costs in the
10-minute demo budget).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_mtst_step.py [--threads 1] [--steps 25]

A pair step is what ``train_mtst`` does for one batch (renamed pairs rendered, both directions,
backward, AdamW; without the gradient clipping); a caption step is one stage-1 batch of 64 scenes. Each figure is the
median of ``--steps`` steps after 5 warm-up steps, on random weights (the cost does not depend on
them). Record the CPU (``lscpu`` model and flags) beside the figures.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.mtst import train as T  # noqa: E402
from generators.mtst.config import MTSTConfig  # noqa: E402
from generators.mtst.seed_sets import make_seed_set  # noqa: E402
from pipeline.shapesworld.sets.mtst import shapesworld_captions  # noqa: E402

VARIANTS = {  # name -> overrides of the MTST config (the defaults first: the baseline)
    "defaults (2-layer LLM)": {},
    "3-layer LLM": {"model": {"llm_layers": 3}},
    "4-layer LLM": {"model": {"llm_layers": 4}},
    "4-layer LLM, instruction 'Change?'": {"model": {"llm_layers": 4, "instruction": "Change?"}},
    "instruction 'Change?'": {"model": {"instruction": "Change?"}},
    "train.freeze_vision": {"train": {"freeze_vision": True}},
    "batch 16 (per pair: x2 steps)": {"train": {"batch_size": 16}},
}


def step_costs(overrides: dict, steps: int, captions) -> tuple[float, float, int]:
    """(ms per pair step, ms per caption step, pairs per step) for one variant."""
    sections = {"data": {"n_triplets": 200}, "train": {"caption_steps": 0}}
    cfg = MTSTConfig.model_validate({k: {**sections.get(k, {}), **overrides.get(k, {})}
                                     for k in {*sections, *overrides}})
    data = make_seed_set(cfg.data)
    model = T._initial_model(cfg, data, None)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    bs = cfg.train.batch_size

    def timed(fn, n):
        out = []
        for s in range(n + 5):
            t0 = time.perf_counter()
            fn(s)
            out.append(time.perf_counter() - t0)
        return 1000 * float(np.median(out[5:]))

    def pair_step(s):
        idx = np.arange(s * bs, (s + 1) * bs) % len(data)
        batch, px = T._permuted_batch(data, idx, np.random.default_rng(s), cfg.train.permute_attributes,
                                      model.config.vision_config.image_size)
        encode = lambda ix: model.encode_images(T._normalize(model, px[ix]))  # noqa: E731
        T._batch_loss(model, batch, encode, np.arange(bs), True).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    images, texts = captions
    pixels = torch.from_numpy(T._resized(images, model.config.vision_config.image_size))

    def caption_step(s):
        feats = model.encode_images(T._normalize(model, pixels))
        model.loss(feats, feats, texts).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    caption = timed(caption_step, max(5, steps // 3))  # stage 1 trains every part, as train_mtst does
    if cfg.train.freeze_vision:  # then the pair stage keeps the vision encoder as stage 1 left it
        model.vision_model.requires_grad_(False)
    return timed(pair_step, steps), caption, bs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--steps", type=int, default=25, help="timed pair steps per variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    captions = shapesworld_captions(64, seed=0)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
          f"{args.threads} thread(s)")
    print(f"{'variant':<38}{'pair step ms':>13}{'ms a pair':>11}{'caption step ms':>17}{'pair vs base':>14}"
          f"{'caption vs base':>17}")
    base = None
    for name, over in VARIANTS.items():
        pair, cap, bs = step_costs(over, args.steps, captions)
        base = base or (pair / bs, cap)
        print(f"{name:<38}{pair:>13.1f}{pair / bs:>11.2f}{cap:>17.1f}{pair / bs / base[0]:>13.2f}x"
              f"{cap / base[1]:>16.2f}x")


if __name__ == "__main__":
    main()
