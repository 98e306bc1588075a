"""Fit the MTST generator on a seed set: LM loss on the text only, AdamW, resumable, cached by config hash.

A run lives in ``<cache_dir>/<hash>/``: ``checkpoints/step-N/`` (model + optimizer, safetensors),
``final/`` (the model), ``loss.json`` and ``loss.png``. A rerun with the same config and seed set
loads ``final/``; an interrupted run resumes from its last checkpoint and ends with the same weights.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from generators.mtst.accel import PairLoss, hold_frozen_in, make_accelerator, micro_batches, sync_unless
from generators.mtst.checkpoints import last_checkpoint, load_trainer_state, plot_losses, save_checkpoint
from generators.mtst.config import MTSTConfig, load_mtst_config
from generators.mtst.data import permuted_pair, renamed_vocabulary
from generators.mtst.lora import add_lora
from generators.mtst.model import META_FILE, MTSTGenerator
from generators.mtst.seed_sets import FileSeedSet, make_seed_set, seed_files_key
from generators.mtst.tokenizer import build_word_tokenizer
from pipeline.shapesworld.sets.mtst import SeedSet, shapesworld_captions

log = logging.getLogger(__name__)
TRAIN_INFO = "train_info.json"  # beside the model: the seed set's counts, how reverse texts come about
CAPTION_LOSS_WARN = 0.1  # mean caption loss over the last 50 steps of stage 1 (see _warn_if_scenes_not_learned)


@dataclass
class TrainResult:
    """Where the trained model is, and what the run did."""

    model_dir: Path
    run_dir: Path
    steps: int
    cached: bool
    seconds: float
    losses: list[float]
    info: dict | None = None  # what train_info.json holds (None when loaded from the cache)


def run_dir_for(cfg: MTSTConfig, seed_set: SeedSet | None = None) -> Path:
    """``<cache_dir>/<hash>``; a seed set passed in directly, or read from files, adds its fingerprint."""
    extra = seed_set.fingerprint() if seed_set is not None else seed_files_key(cfg.data)
    key = cfg.train_hash() if extra is None else f"{cfg.train_hash()[:8]}{extra[:8]}"
    return cfg.train.cache_dir / key


def total_steps(cfg: MTSTConfig, n_pairs: int) -> int:
    return max(1, math.ceil(cfg.train.epochs * n_pairs / cfg.train.batch_size))


def train_mtst(cfg: MTSTConfig, seed_set: SeedSet | None = None, *, stop_after: int | None = None) -> TrainResult:
    """Train (or load the cached result); ``stop_after`` ends this call after that many steps (for resume)."""
    t0 = time.perf_counter()
    run_dir = run_dir_for(cfg, seed_set)
    final = run_dir / "final"
    if (final / META_FILE).is_file():
        losses = json.loads((run_dir / "loss.json").read_text())["loss"]
        return TrainResult(final, run_dir, len(losses), True, time.perf_counter() - t0, losses)
    if cfg.train.processes > 1 and not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return _train_in_processes(cfg, seed_set, stop_after)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)

    # 1. the seed set and the model (fresh, or from the last checkpoint)
    data = seed_set or make_seed_set(cfg.data)
    info = seed_set_info(cfg, data)
    ckpt = last_checkpoint(run_dir)
    captions = _caption_set(cfg) if ckpt is None else None
    model = _initial_model(cfg, data, captions) if ckpt is None else MTSTGenerator.from_pretrained(ckpt, merge_lora=False)
    accelerator = make_accelerator(cfg.train)
    if captions is not None:  # a resumed run has this stage in its checkpoint already
        losses = _caption_stage(model, cfg, *captions, accelerator)
        if accelerator.is_main_process:
            _warn_if_scenes_not_learned(losses)
    if cfg.train.lora_rank and model.lora is None:
        add_lora(model, cfg.train.lora_rank, cfg.train.lora_alpha, cfg.train.lora_targets)
    if cfg.train.dropout is not None:
        model.set_dropout(cfg.train.dropout)
    if cfg.train.gradient_checkpointing:
        model.language_model.gradient_checkpointing_enable()
    frozen_vision = cfg.train.freeze_vision and model.train_all
    if frozen_vision:
        model.vision_model.requires_grad_(False)
    hold_frozen_in(model, accelerator)
    model.to(accelerator.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.train.lr,
    )
    step, losses = 0, []
    if ckpt is not None:
        step, losses = load_trainer_state(ckpt, opt)
    wrapped, opt = accelerator.prepare(PairLoss(model), opt)

    def encoder(pixels: torch.Tensor):  # image indices -> ImageFeatures (vision encoder + Q-Former)
        return lambda ix: model.encode_images(_normalize(model, pixels[ix]))

    permute = _permute_share(cfg, data)  # > 0: every step renders its own batch (_permuted_batch)
    if isinstance(data, FileSeedSet):  # images stay on disk: read and preprocess each batch's own
        encode = lambda ix: model.encode_images(model.preprocess(data.load(ix)))  # noqa: E731
    elif not permute:
        pixels = torch.from_numpy(_resized(data.images, model.config.vision_config.image_size))  # uint8
        encode = encoder(pixels)
        if frozen_vision:  # the patches never change: compute them once
            model.vision_model.eval()
            with torch.no_grad():
                patches = torch.cat([model.encode_vision(_normalize(model, pixels[i : i + 256]))
                                     for i in range(0, len(pixels), 256)])
            encode = lambda ix: model.encode_patches(patches[ix])  # noqa: E731

    # 2. the loop: the data order is a function of (seed, epoch), so a resumed run sees the same batches
    n_steps = total_steps(cfg, len(data))
    bs = cfg.train.batch_size
    end = n_steps if stop_after is None else min(n_steps, step + stop_after)
    from pipeline import console

    main_process = accelerator.is_main_process
    bar = console.bar("pair steps", n_steps, step, on=cfg.train.progress and main_process)
    rng_state = torch.random.get_rng_state()
    while step < end:
        idx = _batch_indices(cfg.train.seed, step, bs, len(data))
        torch.manual_seed(cfg.train.seed * 1_000_003 + step)  # dropout masks: a resumed run draws the same
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step, n_steps)
        if permute:  # this step's pairs, some renamed and re-rendered: a batch of their own
            batch, px = _permuted_batch(data, idx, np.random.default_rng([cfg.train.seed, 2, step]), permute,
                                        model.config.vision_config.image_size)
            batch_data, batch_encode, positions = batch, encoder(px), np.arange(len(idx))
        else:
            batch_data, batch_encode, positions = data, encode, idx
        chunks = micro_batches(positions, accelerator.process_index, accelerator.num_processes, cfg.train.grad_accum)
        step_loss = 0.0
        for k, chunk in enumerate(chunks):
            with sync_unless(accelerator, wrapped, last=k == len(chunks) - 1):
                loss = wrapped(partial(_batch_loss, data=batch_data, encode=batch_encode, idx=chunk,
                                       both=cfg.train.both_directions))
                accelerator.backward(loss / len(chunks) if len(chunks) > 1 else loss)
            step_loss += float(loss.detach()) / len(chunks)
        accelerator.clip_grad_norm_(params, cfg.train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        losses.append(step_loss if accelerator.num_processes == 1 else _mean_over_processes(accelerator, step_loss))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step % cfg.train.checkpoint_every == 0 or step == end) and main_process:
            save_checkpoint(run_dir, model, opt, step, losses)
    bar.close()
    torch.random.set_rng_state(rng_state)
    accelerator.wait_for_everyone()

    # 3. the final model, what it learned from, and the loss curve
    if main_process:
        if step >= n_steps:
            model.eval()
            model.save_pretrained(run_dir / "tmp-final")
            (run_dir / "tmp-final" / TRAIN_INFO).write_text(json.dumps({**info, "steps": step}, indent=1))
            (run_dir / "tmp-final").rename(final)  # appears only when complete
        (run_dir / "loss.json").write_text(json.dumps({"loss": losses}))
        plot_losses(losses, run_dir / "loss.png")
    accelerator.wait_for_everyone()
    return TrainResult(final if step >= n_steps else last_checkpoint(run_dir), run_dir, step, False,
                       time.perf_counter() - t0, losses, info)


def _train_in_processes(cfg: MTSTConfig, seed_set: SeedSet | None, stop_after: int | None) -> TrainResult:
    """``train.processes`` CPU processes (DDP over gloo, ``accelerate launch``, ``num_threads`` or 1 thread
    each) train the run into its cache folder; this process then reads it back from there."""
    if seed_set is not None or stop_after is not None:
        raise ValueError("train.processes > 1 trains the seed set the config names, to the end: pass no "
                         "seed_set or stop_after, or set train.processes: 1")
    t0 = time.perf_counter()
    one = cfg.model_copy(update={"train": cfg.train.model_copy(update={"processes": 1})})  # the same run_dir
    with socket.socket() as s:  # a free port for the processes to meet on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from pipeline import console

    with tempfile.TemporaryDirectory() as tmp, console.paused():  # the main process draws its own bars
        conf = Path(tmp) / "mtst.yaml"
        conf.write_text(json.dumps({"mtst": one.model_dump(mode="json")}))  # JSON is YAML
        subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                        str(cfg.train.processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
                        "no", "--main_process_port", str(port), "-m", "generators.mtst.train", "--config", str(conf)],
                       check=True, env={**os.environ, "OMP_NUM_THREADS": str(cfg.train.num_threads or 1),
                                        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                                       os.environ.get("PYTHONPATH", "")])})
    res = train_mtst(one)
    info = json.loads((res.model_dir / TRAIN_INFO).read_text())
    return replace(res, cached=False, seconds=time.perf_counter() - t0, info=info)


def seed_set_info(cfg: MTSTConfig, data: SeedSet) -> dict:
    """What the model learned from, for ``train_info.json`` beside it; skipped triplets are printed."""
    seed = data.summary() if isinstance(data, FileSeedSet) else {
        "kind": cfg.data.kind, "triplets": len(data), "reverse_texts": sum(1 for p in data.pairs if p[3])}
    if seed.get("skipped"):
        log.warning("seed set: %d triplets skipped (%s); first: %s", seed["skipped"],
                    ", ".join(f"{k} {v}" for k, v in seed["skipped_by_reason"].items()), seed["skipped_examples"][0])
    both = cfg.train.both_directions and seed["reverse_texts"] > 0
    reverse = ("trained on the seed set's reverse texts (both directions)" if both else
               "not trained apart: the forward model on (target, reference), as the MTST authors obtain it")
    return {"seed_set": seed, "reverse": reverse, "train_hash": cfg.train_hash(),
            "mixed_precision": cfg.train.mixed_precision, "lora_rank": cfg.train.lora_rank}


def _mean_over_processes(accelerator, value: float) -> float:
    t = torch.tensor([value], device=accelerator.device)
    return float(accelerator.reduce(t, reduction="mean"))


def _initial_model(cfg: MTSTConfig, data: SeedSet, captions=None) -> MTSTGenerator:
    if cfg.model.pretrained:
        return MTSTGenerator.from_pretrained(cfg.model.pretrained, train_all=bool(cfg.model.train_all))
    renamed = [" ".join(renamed_vocabulary())] if _permute_share(cfg, data) else []
    tok = build_word_tokenizer([*data.texts(), *(captions[1] if captions else []), *renamed, cfg.model.instruction])
    return MTSTGenerator.tiny(tok, cfg.model, seed=cfg.train.seed)


def _caption_set(cfg: MTSTConfig) -> tuple[np.ndarray, list[str]] | None:
    """Rendered scenes and captions for the captioning stage, or None (a checkpoint, or the stage is off)."""
    if cfg.model.pretrained or cfg.train.caption_steps == 0:
        return None
    return shapesworld_captions(cfg.train.caption_images, seed=cfg.data.seed, image_size=cfg.data.image_size)


def _caption_stage(model: MTSTGenerator, cfg: MTSTConfig, images: np.ndarray, captions: list[str],
                   accelerator=None) -> list[float]:
    """Stage 1, BLIP-2's generative pretraining in miniature: the model captions single scenes.

    Reference and target are the same image and the text is its caption, so the Q-Former queries
    learn to carry each object (shape, color, size, cell) before the pair training asks what changed.
    Trained from scratch on the pair texts alone, the tiny model's queries kept only the background.
    Several processes split each batch (``rank::world``) and average their gradients, as DDP would.
    """
    t = cfg.train
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    pixels = torch.from_numpy(_resized(images, model.config.vision_config.image_size))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    rng = np.random.default_rng([t.seed, 1])
    losses = []
    from pipeline import console

    bar = console.bar("caption steps", t.caption_steps, on=t.progress and rank == 0)
    for step in range(t.caption_steps):
        idx = rng.integers(0, len(captions), size=t.caption_batch_size)[rank::world]
        for g in opt.param_groups:
            g["lr"] = t.lr * min(1.0, (step + 1) / max(1, t.warmup_steps))
        feats = model.encode_images(_normalize(model, pixels[idx]))
        loss = model.loss(feats, feats, [captions[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            loss = _mean_gradients(accelerator, params, loss)
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses


def _mean_gradients(accelerator, params, loss: torch.Tensor) -> torch.Tensor:
    """The processes' gradients and losses averaged in one all-reduce; returns the mean loss."""
    used = [p for p in params if p.grad is not None]  # the same parameters on every process
    flat = accelerator.reduce(torch.cat([*(p.grad.reshape(-1) for p in used), loss.detach().reshape(1)]), "mean")
    for p, g in zip(used, flat[:-1].split([p.numel() for p in used])):
        p.grad.copy_(g.view_as(p.grad))
    return flat[-1]


def _warn_if_scenes_not_learned(losses: list[float]) -> None:
    """ShapesWorld captions are exact, so stage 1 ends near zero loss when the queries read every
    object; in 6 probe runs (seeds 0-5, a tokenizer from 200 triplets) it ended at 0.016-0.050 when
    they told shapes apart (linear probe 98-100%) and at 0.12-0.15 when they did not (67-83%); the
    full runs with such a stage 1 (with dropout in it) got most shape edits wrong."""
    tail = float(np.mean(losses[-50:])) if losses else 0.0
    if tail > CAPTION_LOSS_WARN:
        warnings.warn(
            f"MTST caption stage ended at loss {tail:.3f} (> {CAPTION_LOSS_WARN}): the queries may not tell "
            "the shapes apart, and the generator then gets many shape edits wrong; raise "
            "train.caption_steps (1000 learned them where 600 did not) or try another train.seed",
            stacklevel=3,
        )


def _batch_indices(seed: int, step: int, bs: int, n: int) -> np.ndarray:
    per_epoch = max(1, n // bs)  # drop the last partial batch: every step has the same size
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[k * bs : (k + 1) * bs]


def _batch_loss(model: MTSTGenerator, data: SeedSet, encode, idx, both: bool) -> torch.Tensor:
    """``encode(image indices) -> ImageFeatures``: the vision encoder and Q-Former (or the Q-Former alone)."""
    pairs = [data.pairs[i] for i in idx]
    # Each image of the batch goes through the vision encoder + Q-Former once, for both directions.
    uniq = sorted({i for p in pairs for i in p[:2]})
    pos = {img: j for j, img in enumerate(uniq)}
    feats = encode(uniq)
    ref = feats[[pos[p[0]] for p in pairs]]
    tgt = feats[[pos[p[1]] for p in pairs]]
    loss = model.loss(ref, tgt, [p[2] for p in pairs])
    rev = [k for k, p in enumerate(pairs) if p[3]]
    if both and rev:
        loss = (loss + model.loss(tgt[rev], ref[rev], [pairs[k][3] for k in rev])) / 2
    return loss


def _permute_share(cfg: MTSTConfig, data: SeedSet) -> float:
    """``train.permute_attributes`` for a seed set with ShapesWorld scenes; 0 for one without (a
    CIRR/FashionIQ layout, noise): its images cannot be re-rendered, so it trains as annotated."""
    return cfg.train.permute_attributes if data.scenes is not None else 0.0


def _permuted_batch(data: SeedSet, idx, rng: np.random.Generator, share: float, size: int):
    """The pairs ``idx`` as a SeedSet of their own (images 2k, 2k + 1), a ``share`` of them with
    colors, shapes and settings renamed (``permuted_pair``), and its images resized to ``size``, uint8."""
    images, pairs = [], []
    for k, i in enumerate(idx):
        r, t, fwd, rev = data.pairs[i]
        if rng.random() < share:
            a, b, (fwd, rev) = permuted_pair((data.scenes[r], data.scenes[t]), (fwd, rev), rng, data.images.shape[1])
        else:
            a, b = data.images[r], data.images[t]
        images += [a, b]
        pairs.append((2 * k, 2 * k + 1, fwd, rev))
    images = np.stack(images)
    return SeedSet(images, pairs), torch.from_numpy(_resized(images, size))


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    """Resize once up front (as preprocess would), so batches only normalize."""
    if images.shape[1] == size:
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])


def _normalize(model: MTSTGenerator, images_u8: torch.Tensor) -> torch.Tensor:
    x = images_u8.float().div_(255.0)
    mean = torch.tensor(model.image_mean).view(1, 1, 1, 3)
    std = torch.tensor(model.image_std).view(1, 1, 1, 3)
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


def _lr_at(cfg: MTSTConfig, step: int, n_steps: int) -> float:
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    frac = (step - t.warmup_steps) / max(1, n_steps - t.warmup_steps)
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the MTST generator on its seed set (generator.mtst.data: ShapesWorld, "
                                 "CIRR, FashionIQ or shards); the same as `cirforge generator train`.")
    ap.add_argument("--config", default=None, help="YAML with the MTST section (top level, mtst: or generator.mtst:)")
    args = ap.parse_args(argv)
    try:
        cfg = load_mtst_config(args.config)
    except (FileNotFoundError, ValueError) as err:
        ap.error(str(err))
    res = train_mtst(cfg)
    state = "cached" if res.cached else f"trained in {res.seconds:.0f} s"
    if int(os.environ.get("RANK", 0)) == 0:  # under accelerate launch: the first process only
        print(f"model: {res.model_dir} ({state}, {res.steps} steps, last loss {res.losses[-1]:.4f})")


if __name__ == "__main__":
    main()
