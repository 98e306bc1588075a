"""InstructPix2Pix edits/s: the batched editor (as the negatives stage calls it) vs the default
per-image pipeline call, in the same run, with outputs compared.

    python benchmarks/bench_ip2p.py --device cuda                 # SD1.5 size, 512 px, 20 steps, fp16
    python benchmarks/bench_ip2p.py --device cpu --scale tiny     # smoke test

Random weights (speed does not depend on weight values). The editor path includes what the stage
pays: PNG decode of the sources and PNG encode of the results. Prints one JSON line per variant as
it goes and a summary at the end; writes bench_ip2p.json to $OUT (or bench_out/).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from generators.negatives.editors import EditRequest  # noqa: E402
from generators.negatives.ip2p import InstructPix2PixEditor, random_pipeline  # noqa: E402

# name -> editor options; each variant is measured at each batch size given. Keys outside the
# editor's options: "dtype" (weights for this variant), "inductor" (torch._inductor.config values).
FUSED = dict(channels_last=False, compile_unet=True, fuse_qkv=True)
VARIANTS = {
    "batched": dict(channels_last=False, compile_unet=False),
    "channels_last": dict(channels_last=True, compile_unet=False),
    "compile": dict(channels_last=True, compile_unet=True),
    "compile_nchw": dict(channels_last=False, compile_unet=True),
    "compile_fused": FUSED,
    "compile_fused_cl": {**FUSED, "channels_last": True},
    # CUDA graphs: one replay per UNet call instead of ~1,000 kernel launches
    "cudagraphs": {**FUSED, "compile_mode": "reduce-overhead"},
    "bf16": {**FUSED, "dtype": "bfloat16"},
    "flash": {**FUSED, "sdpa_backend": "flash"},
    "cudnn_attn": {**FUSED, "sdpa_backend": "cudnn"},
    "efficient_attn": {**FUSED, "sdpa_backend": "efficient"},
    # the flags diffusers' torch.compile guide sets for SD UNets
    "inductor_tuned": {**FUSED, "inductor": dict(conv_1x1_as_mm=True, coordinate_descent_tuning=True,
                                                  epilogue_fusion=False,
                                                  coordinate_descent_check_all_directions=True)},
    "autotune": {**FUSED, "compile_mode": "max-autotune-no-cudagraphs"},
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def inputs(n: int, res: int, seed: int = 0) -> tuple[list[Image.Image], list[str], list[int]]:
    rng = np.random.default_rng(seed)
    # Smooth random images (upsampled noise) look more like photos to the VAE than white noise.
    imgs = [Image.fromarray(rng.integers(0, 256, (res // 16, res // 16, 3), dtype=np.uint8)).resize((res, res),
                                                                                                    Image.BICUBIC)
            for _ in range(n)]
    texts = [" ".join(f"w{int(x)}" for x in rng.integers(0, 900, 6)) for _ in range(n)]
    return imgs, texts, [1000 + i for i in range(n)]


def png(im: Image.Image) -> dict:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return {"bytes": buf.getvalue(), "path": None}


def default_per_image(pipe, imgs, texts, seeds, a, device) -> tuple[float, list[np.ndarray]]:
    """What a user writes: one default pipeline call per image."""
    outs = []
    def one(i):
        return pipe(prompt=texts[i], image=imgs[i], num_inference_steps=a.steps, guidance_scale=7.5,
                    image_guidance_scale=1.5, generator=torch.Generator("cpu").manual_seed(seeds[i]),
                    output_type="pil").images[0]
    with torch.inference_mode():
        one(0)  # warm-up
        sync(device)
        t = time.perf_counter()
        for i in range(len(imgs)):
            outs.append(np.asarray(one(i), dtype=np.int16))
        sync(device)
    return len(imgs) / (time.perf_counter() - t), outs


def editor_run(editor, imgs, texts, seeds, device) -> tuple[float, list[np.ndarray], float]:
    reqs = [EditRequest(t, png(im), seed=s) for im, t, s in zip(imgs, texts, seeds)]
    t = time.perf_counter()
    editor.edit_batch(reqs[:editor.batch_size])  # warm-up (compiles, picks conv kernels)
    sync(device)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    res = editor.edit_batch(reqs)
    sync(device)
    rate = len(reqs) / (time.perf_counter() - t)
    return rate, [np.asarray(Image.open(io.BytesIO(r.image["bytes"])).convert("RGB"), dtype=np.int16)
                  for r in res], warm


def compare(a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    d = np.abs(np.stack(a) - np.stack(b)[:len(a)])
    return {"mean_abs_diff": round(float(d.mean()), 3), "p99_abs_diff": float(np.percentile(d, 99)),
            "max_abs_diff": int(d.max())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--scale", default=None, help="sd15 (default on cuda) or tiny (default on cpu)")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--edits", type=int, default=None, help="edits per timed editor run")
    ap.add_argument("--baseline-edits", type=int, default=None)
    ap.add_argument("--batch-sizes", default=None, help="comma list, e.g. 16,32")
    # autotune spent over 6 minutes tuning on an H100 without finishing: ask for it by name
    ap.add_argument("--variants", default="batched,compile_fused", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--tolerance", type=float, default=2.0, help="max mean abs pixel diff (0..255) to call equal")
    a = ap.parse_args(argv)
    cuda = a.device == "cuda"
    if not cuda:
        torch.set_num_threads(1)  # tiny convs on a shared CPU: threads only spin
    a.scale = a.scale or ("sd15" if cuda else "tiny")
    a.resolution = a.resolution or (512 if a.scale == "sd15" else 32)
    a.steps = a.steps or (20 if a.scale == "sd15" else 2)
    a.edits = a.edits or (64 if cuda else 4)
    a.baseline_edits = a.baseline_edits or (8 if cuda else 2)
    sizes = [int(x) for x in (a.batch_sizes or ("16,32" if cuda else "2")).split(",")]
    dtype = "float16" if cuda else "float32"
    out: dict = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
                 "scale": a.scale, "resolution": a.resolution, "steps": a.steps, "dtype": dtype}
    import diffusers

    out["diffusers"] = diffusers.__version__
    imgs, texts, seeds = inputs(max(a.edits, *sizes), a.resolution)

    pipe = random_pipeline(a.scale).to(a.device, getattr(torch, dtype))
    pipe.set_progress_bar_config(disable=True)
    unet = pipe.unet
    rate, ref_out = default_per_image(pipe, imgs[:a.baseline_edits], texts, seeds, a, a.device)
    out["default_per_image_edits_per_s"] = round(rate, 3)
    print(json.dumps({"default_per_image_edits_per_s": out["default_per_image_edits_per_s"]}), flush=True)
    results = []
    for name in a.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"--variants: {name!r} is not known; use {', '.join(VARIANTS)}")
        opts = dict(VARIANTS[name])
        vdtype = opts.pop("dtype", dtype)
        inductor = opts.pop("inductor", {})
        for bs in sizes:
            # Every variant edits with the same weights: undo the last variant's changes first.
            pipe.unet = unet.to(memory_format=torch.contiguous_format)
            pipe.vae.to(memory_format=torch.contiguous_format)
            pipe.vae.__dict__.pop("decode", None)  # drop a compiled decode from the last variant
            if getattr(pipe.unet, "original_attn_processors", None) is not None:
                pipe.unet.unfuse_qkv_projections()  # the last variant fused q, k, v
            pipe.to(a.device, getattr(torch, dtype))  # the last variant may have cast the weights
            saved = {}
            if cuda:
                torch._dynamo.reset()
                import torch._inductor.config as ic

                saved = {key: getattr(ic, key) for key in inductor}
                for key, v in inductor.items():
                    setattr(ic, key, v)
            t0 = time.perf_counter()
            try:
                ed = InstructPix2PixEditor(pipeline=pipe, device=a.device, dtype=vdtype, steps=a.steps,
                                           resolution=a.resolution, batch_size=bs, **opts)
                # Whole batches only: a smaller last chunk would make torch.compile recompile with
                # dynamic shapes inside the timed run.
                n = max(bs, a.edits // bs * bs)
                rate, got, warm_s = editor_run(ed, imgs[:n], texts[:n], seeds[:n], a.device)
                r = {"variant": name, "batch_size": bs, "edits": n, "dtype": str(ed.dtype).removeprefix("torch."),
                     "edits_per_s": round(rate, 3),
                     "warmup_s": round(warm_s, 1), **compare(ref_out, got)}
                r["equal_within_tolerance"] = r["mean_abs_diff"] <= a.tolerance
            except torch.OutOfMemoryError:
                r = {"variant": name, "batch_size": bs, "error": "OOM"}
            except Exception as err:  # a backend this GPU/torch lacks: record it, measure the rest
                r = {"variant": name, "batch_size": bs, "error": f"{type(err).__name__}: {str(err)[:300]}"}
            if cuda:
                import torch._inductor.config as ic

                for key, v in saved.items():
                    setattr(ic, key, v)
                r["peak_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
                torch.cuda.reset_peak_memory_stats()
                torch.cuda.empty_cache()
            r["wall_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(r), flush=True)
            results.append(r)
    out["variants"] = results
    ok = [r for r in results if r.get("equal_within_tolerance")]
    if ok:
        best = max(ok, key=lambda r: r["edits_per_s"])
        out["best"] = best
        out["speedup_vs_default"] = round(best["edits_per_s"] / out["default_per_image_edits_per_s"], 2)
    print(json.dumps(out, indent=1), flush=True)
    dest = Path(os.environ.get("OUT") or "bench_out")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bench_ip2p.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
