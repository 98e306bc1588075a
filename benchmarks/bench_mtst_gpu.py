"""MTST generator throughput at real size (random weights, bf16) on one GPU.

Workload: a mined pool of N images, ``--pairs-per-image`` pairs per image, forward AND reverse
text of exactly 20 new tokens for every pair. Two paths on the same model, in the same run:

- baseline: what a user writes with transformers: for each batch of pairs, encode both images,
  build the prefix, ``generate`` (dynamic KV cache); the reverse direction the same way again.
- cirforge: ``generators.mtst.pair_decode``: vision + Q-Former once per image (shared by all its pairs
  and both directions), then both directions decoded in large fixed-size batches with a static
  KV cache (optionally compiled).

Prints texts/s of both, the ratio, peak GPU memory, and the share of the bf16 matmul peak
(measured here, in this run) spent on useful model FLOPs (counted with FlopCounterMode on the
cirforge path: vision once per image, prefix + 20 decode steps per text).

    python benchmarks/bench_mtst_gpu.py --device cuda            # real size, H100
    python benchmarks/bench_mtst_gpu.py --device cpu --tiny      # smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.mtst.model import MTSTGenerator  # noqa: E402
from generators.mtst.tokenizer import build_word_tokenizer  # noqa: E402
from generators.mtst.pair_decode import PairDecoder, greedy_config  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def real_model(device, dtype) -> MTSTGenerator:
    from transformers import InstructBlipConfig, InstructBlipQFormerConfig, InstructBlipVisionConfig, LlamaConfig

    tok = build_word_tokenizer([" ".join(f"w{i}" for i in range(31996))])  # 32000 with the specials
    vc = InstructBlipVisionConfig(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39,
                                  num_attention_heads=16, image_size=224, patch_size=14)
    qc = InstructBlipQFormerConfig(encoder_hidden_size=1408, vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    tc = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=len(tok), max_position_embeddings=2048,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = InstructBlipConfig(vision_config=vc.to_dict(), qformer_config=qc.to_dict(), text_config=tc.to_dict(),
                             num_query_tokens=32)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MTSTGenerator(cfg, tok)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def tiny_model(device, dtype) -> MTSTGenerator:
    tok = build_word_tokenizer(["make the red circle blue and move it to the left"])
    return MTSTGenerator.tiny(tok).to(device, dtype).eval()


def pool(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def mined_pairs(n: int, per_image: int) -> tuple[list[int], list[int]]:
    ref, tgt = [], []
    for i in range(n):
        for k in range(per_image):
            ref.append(i)
            tgt.append((i + 1 + 7 * k) % n)
    return ref, tgt


def baseline(model, images, ref, tgt, batch, new_tokens) -> int:
    """Plain path: per batch, encode both images of every pair, prefix, HF generate; twice."""
    gen = greedy_config(model, new_tokens, cache="dynamic")
    n = 0
    for a, b in ((ref, tgt), (tgt, ref)):
        for i in range(0, len(a), batch):
            fa = model.encode_images(model.preprocess([images[j] for j in a[i:i + batch]]))
            fb = model.encode_images(model.preprocess([images[j] for j in b[i:i + batch]]))
            prefix = model.prefix_embeds(fa, fb)
            mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
            out = model.language_model.generate(inputs_embeds=prefix, attention_mask=mask, generation_config=gen)
            n += out.shape[0]
    return n


def count_flops(model, images, new_tokens) -> tuple[float, float]:
    """Useful FLOPs per image (vision + Q-Former) and per text (joint Q-Former, prefill, decode)."""
    from torch.utils.flop_counter import FlopCounterMode

    k = 4
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            feats = model.encode_images(model.preprocess(images[:k]))
        per_image = fc.get_total_flops() / k
        dec = PairDecoder(model, batch_size=k, new_tokens=new_tokens, cache="dynamic")
        with FlopCounterMode(display=False) as fc:
            dec.decode(feats, list(range(k)), [(i + 1) % k for i in range(k)])
        per_text = fc.get_total_flops() / k
    return per_image, per_text


def matmul_peak(device, dtype) -> float:
    n = 8192 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 50 if device.type == "cuda" else 3
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model (CPU smoke test)")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--pairs-per-image", type=int, default=5)
    ap.add_argument("--batch", type=int, default=512, help="cirforge decode batch (texts)")
    ap.add_argument("--baseline-batch", type=int, default=256)
    ap.add_argument("--baseline-pairs", type=int, default=512, help="pairs timed on the baseline path")
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--cache", default="static", choices=["static", "dynamic"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    args = ap.parse_args()

    device = torch.device(args.device)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
           "args": vars(args)}
    t = time.perf_counter()
    model = (tiny_model if args.tiny else real_model)(device, dtype)
    out["params_B"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
    out["init_s"] = round(time.perf_counter() - t, 1)
    size = model.config.vision_config.image_size
    images = pool(args.images, size)
    ref, tgt = mined_pairs(args.images, args.pairs_per_image)
    n_texts = 2 * len(ref)
    out["pool_images"], out["pairs"], out["texts"] = args.images, len(ref), n_texts
    print(json.dumps(out), flush=True)

    peak = matmul_peak(device, dtype)
    out["matmul_peak_TFLOPs"] = round(peak / 1e12, 1)
    per_image, per_text = count_flops(model, images, args.new_tokens)
    out["GFLOP_per_image"], out["GFLOP_per_text"] = round(per_image / 1e9, 1), round(per_text / 1e9, 1)

    with torch.inference_mode():
        # baseline, on a prefix of the pairs (after one warm-up batch)
        nb = min(args.baseline_pairs, len(ref))
        baseline(model, images, ref[:2], tgt[:2], args.baseline_batch, args.new_tokens)
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        done = baseline(model, images, ref[:nb], tgt[:nb], args.baseline_batch, args.new_tokens)
        sync(device)
        dt = time.perf_counter() - t
        out["baseline_texts_per_s"] = round(done / dt, 2)
        if device.type == "cuda":
            out["baseline_peak_GB"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        print(json.dumps(out), flush=True)

        # cirforge: warm-up (compilation, cache allocation) on one batch, then the whole pool
        dec = PairDecoder(model, batch_size=args.batch, new_tokens=args.new_tokens, cache=args.cache,
                          compile=args.compile)
        t = time.perf_counter()
        warm_n = min(len(ref), args.batch // 2)
        dec.describe(images[: args.images], ref[:warm_n], tgt[:warm_n])
        sync(device)
        out["cirforge_warmup_s"] = round(time.perf_counter() - t, 1)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        fwd, rev = dec.describe(images, ref, tgt)
        sync(device)
        dt = time.perf_counter() - t
        assert len(fwd) == len(rev) == len(ref)
        out["cirforge_s"] = round(dt, 2)
        out["cirforge_texts_per_s"] = round(n_texts / dt, 2)
        out["ratio_vs_baseline"] = round(out["cirforge_texts_per_s"] / out["baseline_texts_per_s"], 2)
        if device.type == "cuda":
            out["cirforge_peak_GB"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        useful = args.images * per_image + n_texts * per_text
        out["useful_TFLOPs_per_s"] = round(useful / dt / 1e12, 1)
        out["share_of_matmul_peak"] = round(useful / dt / peak, 3)
    print(json.dumps(out), flush=True)
    dest = Path(os.environ.get("OUT", "bench_out"))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "mtst_gpu.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
