"""CLIP image and text embeddings, loaded through ``CLIPModel.from_pretrained`` (id or folder).

The embedded default is a tiny CLIP trained from scratch on ShapesWorld (image vs caption) on
CPU in about a minute, saved with ``save_pretrained`` (safetensors, a ``tokenizers`` WordLevel
tokenizer, the CLIP image processor) and cached by config hash: a rerun loads it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.config_mining import EmbedderConfig, TinyClipConfig

log = logging.getLogger(__name__)

TINY_FORMAT = "tiny-clip-v1"  # bump when training code changes what a config produces
SPECIAL = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")  # EOS must not be id 2: CLIP treats 2 as legacy argmax pooling


class ClipEmbedder:
    """Normalized float32 CLIP embeddings of PIL images and of texts."""

    def __init__(self, path: str | Path, device: str = "auto", dtype: str = "float32", batch_size: int = 64):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.id = str(path)
        self.batch_size = batch_size
        # safetensors only, never code shipped with a checkpoint (trust_remote_code stays off)
        self.model = CLIPModel.from_pretrained(path, use_safetensors=True, trust_remote_code=False,
                                               dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        self.processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=False)
        self.dim = self.model.config.projection_dim

    @classmethod
    def from_config(cls, cfg: EmbedderConfig | None = None, cache_dir: str | Path = "cache") -> ClipEmbedder:
        """The configured checkpoint, or the tiny ShapesWorld CLIP (trained on first use)."""
        from pipeline.checkpoints import CheckpointError, check_checkpoint

        cfg = cfg or EmbedderConfig()
        if cfg.checkpoint is None:
            return cls(ensure_tiny_clip(cfg.tiny, cache_dir), device=cfg.device, dtype=cfg.dtype,
                       batch_size=cfg.batch_size)
        path = check_checkpoint("embedder.checkpoint", cfg.checkpoint)
        try:
            return cls(path, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)
        except (OSError, ValueError) as err:
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise CheckpointError(f"embedder.checkpoint={cfg.checkpoint!r}: cannot load a CLIP model ({first})") from err

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for s in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") for im in images[s:s + self.batch_size]]
            pix = self.processor(images=chunk, return_tensors="pt")["pixel_values"]
            feats = self.model.get_image_features(pixel_values=pix.to(self.device, self.model.dtype))
            out.append(_normalized(feats))
        return np.concatenate(out)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        max_len = self.model.config.text_config.max_position_embeddings
        for s in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[s:s + self.batch_size]), padding=True, truncation=True,
                                 max_length=max_len, return_tensors="pt").to(self.device)
            feats = self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            out.append(_normalized(feats))
        return np.concatenate(out)


def _normalized(feats) -> np.ndarray:
    # transformers 5 returns an output object whose pooler_output is the projected embedding.
    t = feats.pooler_output if hasattr(feats, "pooler_output") else feats
    return F.normalize(t.float(), dim=-1).cpu().numpy()


# -- the tiny ShapesWorld CLIP ------------------------------------------------------------------
def tiny_clip_dir(cfg: TinyClipConfig, cache_dir: str | Path) -> Path:
    key = hashlib.sha256(json.dumps([TINY_FORMAT, cfg.model_dump(mode="json")], sort_keys=True).encode())
    return Path(cache_dir) / "tiny-clip" / key.hexdigest()[:16]


def ensure_tiny_clip(cfg: TinyClipConfig | None = None, cache_dir: str | Path = "cache") -> Path:
    """The folder of the tiny CLIP for this config: loaded from the cache, or trained and saved once."""
    cfg = cfg or TinyClipConfig()
    final = tiny_clip_dir(cfg, cache_dir)
    if (final / "metrics.json").is_file():
        return final
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    train_tiny_clip(cfg, tmp)
    try:
        os.rename(tmp, final)  # metrics.json is written last: a folder under the final name is complete
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _world_rows(cfg: TinyClipConfig, families: int, seed_name: str):
    from pipeline.seeding import derive_seed
    from pipeline.shapesworld import ShapesWorld

    world = ShapesWorld(image_size=cfg.image_size, families=families, variants_per_family=4, max_objects=4,
                        seed=derive_seed(cfg.seed, seed_name))
    rows = list(world.pool())
    return [world.image(r["scene"]) for r in rows], [r["caption"] for r in rows]


def build_tokenizer(max_length: int = 64):
    """A WordLevel tokenizer over the ShapesWorld vocabulary, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from pipeline.shapesworld import COLORS, SETTINGS, SHAPES, SIZES
    from pipeline.shapesworld.scene import CAPTION_LOCATION, POSITIONS

    # The vocabulary is the world's: a held-out caption never meets an unknown word.
    words = set(COLORS) | set(SETTINGS) | set(SHAPES) | set(SIZES)
    for phrase in list(POSITIONS) + list(CAPTION_LOCATION.values()):
        words.update(phrase.lower().split())
    words.update("a an and scene with , .".split())
    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for w in sorted(words - set(vocab)):
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]",
                                   unk_token="[UNK]", model_max_length=max_length)


def tiny_clip_config(cfg: TinyClipConfig, tokenizer):
    from transformers import CLIPConfig

    inter = 2 * cfg.hidden_size
    text = dict(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=inter,
                num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, max_position_embeddings=64,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
                  intermediate_size=inter, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)


def train_tiny_clip(cfg: TinyClipConfig, out_dir: str | Path) -> dict:
    """Train the tiny CLIP (contrastive, image vs Scene.caption()), save it to out_dir; returns metrics."""
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor, CLIPModel

    out_dir = Path(out_dir)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer()
    size = {"shortest_edge": cfg.image_size}
    processor = CLIPImageProcessor(size=size, crop_size={"height": cfg.image_size, "width": cfg.image_size})
    model = CLIPModel(tiny_clip_config(cfg, tokenizer))
    # 1. data: rendered once, preprocessed once (the same processor embedding uses)
    images, captions = _world_rows(cfg, cfg.families, "tiny-clip-train")
    pix = processor(images=images, return_tensors="pt")["pixel_values"]
    enc = tokenizer(captions, padding=True, return_tensors="pt")
    # 2. AdamW, linear warm-up then cosine decay
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(captions), generator=gen)
    pos = 0
    model.train()
    log.info("training the tiny ShapesWorld CLIP (%d images, %d steps); cached once done", len(captions), cfg.steps)
    for step in range(cfg.steps):
        if step % 100 == 0:
            log.info("tiny CLIP step %d/%d", step, cfg.steps)
        if pos + cfg.batch_size > len(order):
            order, pos = torch.randperm(len(captions), generator=gen), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        mask = enc["attention_mask"][idx]
        width = int(mask.sum(1).max())  # trim the padding this batch does not need
        loss = model(input_ids=enc["input_ids"][idx, :width], attention_mask=mask[:, :width],
                     pixel_values=pix[idx], return_loss=True).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    train_seconds = time.time() - t0
    # 3. save, then measure retrieval on held-out scenes through the saved folder
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    metrics = {"train_seconds": round(train_seconds, 1), "final_loss": round(loss.item(), 4),
               "train_images": len(captions), **evaluate_retrieval(ClipEmbedder(out_dir, device="cpu"), cfg)}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def evaluate_retrieval(embedder: ClipEmbedder, cfg: TinyClipConfig, families: int = 100) -> dict:
    """Image->caption and caption->image recall@1/@5 among held-out ShapesWorld scenes."""
    images, captions = _world_rows(cfg, families, "tiny-clip-heldout")
    sims = embedder.embed_images(images) @ embedder.embed_texts(captions).T
    truth = np.arange(len(captions))

    def recall(s: np.ndarray, k: int) -> float:
        top = np.argsort(-s, axis=1)[:, :k]
        return round(float((top == truth[:, None]).any(axis=1).mean()), 4)

    return {"heldout_images": len(captions), "image_to_caption_r1": recall(sims, 1),
            "image_to_caption_r5": recall(sims, 5), "caption_to_image_r1": recall(sims.T, 1)}


def embedder_from_dict(config: dict | None = None, cache_dir: str | Path = "cache") -> ClipEmbedder:
    """``ClipEmbedder.from_config`` from a plain dict: the picklable form Ray workers build from."""
    return ClipEmbedder.from_config(EmbedderConfig.model_validate(config or {}), cache_dir)
