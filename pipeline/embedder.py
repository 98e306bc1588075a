"""CLIP image and text embeddings, loaded through ``CLIPModel.from_pretrained`` (id or folder).

The embedded default is a tiny CLIP trained from scratch on ShapesWorld on CPU in a few minutes
(image vs caption, and modification texts vs image changes: ``train_tiny_clip``), saved with
``save_pretrained`` (safetensors, a ``tokenizers`` WordLevel tokenizer, the CLIP image processor)
and cached by config hash: a rerun loads it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.config_mining import EmbedderConfig, TinyClipConfig

log = logging.getLogger(__name__)

TINY_FORMAT = "tiny-clip-v5"  # bump when training code changes what a config produces
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
    return _features(feats).cpu().numpy()


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


def _world_rows(cfg: TinyClipConfig, families: int, seed_name: str) -> list[dict]:
    """The pool rows (scene, family label, caption) of a ShapesWorld seeded by ``seed_name``."""
    from pipeline.seeding import derive_seed
    from pipeline.shapesworld import ShapesWorld

    world = ShapesWorld(image_size=cfg.render_size, families=families, variants_per_family=4, max_objects=4,
                        seed=derive_seed(cfg.seed, seed_name))
    return [{**r, "image": world.image(r["scene"])} for r in world.pool()]


def edit_pairs(rows: list[dict], seed: int) -> list[tuple[int, int, str, str, str]]:
    """(reference index, target index, annotator text, annotator reverse text, hard negative text)
    for every two members of a pool family (1 or 2 edits apart), oriented and phrased by a seeded
    draw. The hard negative is a text for the same reference with one edit changed (another value,
    or the change on another object), else another random edit of the reference; it never turns
    the reference into the target."""
    import random
    from itertools import combinations

    from pipeline.seeding import derive_seed
    from pipeline.shapesworld import annotate

    families: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        families.setdefault(r["label"], []).append(i)
    out = []
    for label, members in families.items():
        for a, b in combinations(members, 2):
            rng = random.Random(derive_seed(seed, "tiny-clip-edit", label, a, b))
            if rng.random() < 0.5:
                a, b = b, a
            fwd = annotate(rows[a]["scene"], rows[b]["scene"], rng)
            rev = annotate(rows[b]["scene"], rows[a]["scene"], rng)
            hard = _hard_negative_text(rows[a]["scene"], rows[b]["scene"], rng)
            if fwd and rev and hard:
                out.append((a, b, fwd, rev, hard))
    return out


def _hard_negative_text(ref, tgt, rng) -> str | None:
    from pipeline.shapesworld import apply_edit, apply_text, describe_edits, diff, random_edit
    from pipeline.shapesworld.sets.filters import wrong_edit

    for kind in rng.sample(("wrong_attribute", "wrong_object", "other_edit"), 3):
        try:
            edits = [random_edit(ref, rng)] if kind == "other_edit" else wrong_edit(kind, ref, diff(ref, tgt), rng)
            text = None if edits is None else describe_edits(ref, edits, rng)
        except (ValueError, AttributeError, IndexError):
            continue  # the altered edit does not apply to this scene
        if text and apply_text(text, ref) != tgt and (kind != "other_edit" or apply_edit(ref, edits[0]) != tgt):
            return text
    return None


def text_vocabulary() -> set[str]:
    """Every word the world writes: its captions and the annotator's phrase tables (language.py),
    split the way the tokenizer splits (lowercase, words and punctuation apart)."""
    from tokenizers import pre_tokenizers

    from pipeline.shapesworld import COLORS, SETTINGS, SHAPES, SIZES, language
    from pipeline.shapesworld.scene import CAPTION_LOCATION, POSITIONS

    phrases = [*COLORS, *SETTINGS, *SHAPES, *SIZES, *POSITIONS, *CAPTION_LOCATION.values(), "a an and scene with , ."]
    phrases += [t for _, t, _ in language.TEMPLATES] + list(language.JOINS) + [" ".join(c) for c in language.CONNECTORS]
    phrases += [p for v in (*language.LOCATIONS.values(), *language.DESTINATIONS.values()) for p in v]
    phrases += [language.OBJECT_NOUN, language.PRONOUN, *language.PREPOSITIONS, "corner", "middle"]
    split = pre_tokenizers.Whitespace()
    words = set()
    for p in phrases:
        p = re.sub(r"\{\w+\}", " ", p.lower())  # template slots are filled from the lists above
        words.update(w for w, _ in split.pre_tokenize_str(p))
    return words


def build_tokenizer(max_length: int = 64):
    """A WordLevel tokenizer over the ShapesWorld vocabulary, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # The vocabulary is the world's (captions and modification texts): a held-out text never meets an unknown word.
    words = text_vocabulary()
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


def _features(out) -> torch.Tensor:
    """L2-normalized float32 projected features (transformers 5 returns an output object whose
    ``pooler_output`` is the projected embedding)."""
    t = out.pooler_output if hasattr(out, "pooler_output") else out
    return F.normalize(t.float(), dim=-1)


def _info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, a_extra: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric contrastive loss: row i of ``a`` belongs with row i of ``b`` (all L2-normalized);
    rows of ``a_extra`` are further negatives for every row of ``b``."""
    logits = scale * a @ b.T
    target = torch.arange(len(a))
    cols = logits.T if a_extra is None else torch.cat([logits.T, scale * b @ a_extra.T], dim=1)
    return (F.cross_entropy(logits, target) + F.cross_entropy(cols, target)) / 2


def edit_losses(text_fwd: torch.Tensor, text_rev: torch.Tensor, text_null: torch.Tensor, ref: torch.Tensor,
                tgt: torch.Tensor, scale: torch.Tensor,
                text_hard: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two edit objectives over a batch of pairs (all inputs L2-normalized embeddings).

    direction: E_T(text) - E_T(null) against E_I(tgt) - E_I(ref), and the reverse text against the
    opposite change (the quantity the direction and round-trip filters score); composed: E_T(text)
    itself against the change (what text-image consistency and the negatives' margins read:
    cos(x, text) - cos(ref, text) is text . (x - ref)). Negatives: the other pairs (the same
    family's other edits of the same images), for each text the same pair's opposite change, and
    for each change the hard negative texts (``text_hard``, the same reference with another edit).
    """
    change = F.normalize(tgt - ref, dim=-1)
    changes = torch.cat([change, -change])
    texts = torch.cat([text_fwd, text_rev])
    hard_dir = None if text_hard is None else F.normalize(text_hard - text_null, dim=-1)
    direction = _info_nce(F.normalize(texts - text_null, dim=-1), changes, scale, hard_dir)
    return direction, _info_nce(texts, changes, scale, text_hard)


EDIT_PAIRS_PER_FAMILY = 4  # hard in-batch negatives: other changes between the same family's images


def _edit_batch(by_family: list[list[int]], n_pairs: int, gen: torch.Generator) -> list[int]:
    """Pair indices for one step: EDIT_PAIRS_PER_FAMILY pairs from each of n_pairs / that many families."""
    fams = torch.randperm(len(by_family), generator=gen)[:max(1, n_pairs // EDIT_PAIRS_PER_FAMILY)]
    out = []
    for f in fams.tolist():
        members = by_family[f]
        pick = torch.randperm(len(members), generator=gen)[:EDIT_PAIRS_PER_FAMILY]
        out += [members[k] for k in pick.tolist()]
    return out


def train_tiny_clip(cfg: TinyClipConfig, out_dir: str | Path) -> dict:
    """Train the tiny CLIP, save it to out_dir; returns metrics.

    Each step: the contrastive image vs ``Scene.caption()`` loss over ``cfg.batch_size`` pool
    images, plus (``cfg.edit_batch`` > 0) the edit losses (``edit_losses``) over that many pairs of
    the same training pool's families with their annotator texts (``edit_pairs``).
    """
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor, CLIPModel

    out_dir = Path(out_dir)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer()
    size = {"shortest_edge": cfg.image_size}
    processor = CLIPImageProcessor(size=size, crop_size={"height": cfg.image_size, "width": cfg.image_size})
    model = CLIPModel(tiny_clip_config(cfg, tokenizer))
    # 1. data: rendered once, preprocessed once (the same processor embedding uses)
    rows = _world_rows(cfg, cfg.families, "tiny-clip-train")
    captions = [r["caption"] for r in rows]
    pix = processor(images=[r["image"] for r in rows], return_tensors="pt")["pixel_values"]
    enc = tokenizer(captions, padding=True, return_tensors="pt")
    pairs = edit_pairs(rows, cfg.seed) if cfg.edit_batch else []
    by_family: dict[str, list[int]] = {}
    for k, (a, *_) in enumerate(pairs):
        by_family.setdefault(rows[a]["label"], []).append(k)
    families = list(by_family.values())
    if pairs:
        fwd = tokenizer([p[2] for p in pairs], padding=True, return_tensors="pt")
        rev = tokenizer([p[3] for p in pairs], padding=True, return_tensors="pt")
        hard = tokenizer([p[4] for p in pairs], padding=True, return_tensors="pt")
        null = tokenizer([""], return_tensors="pt")
    # 2. AdamW, linear warm-up then cosine decay
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(captions), generator=gen)
    pos = 0
    model.train()
    log.info("training the tiny ShapesWorld CLIP (%d images, %d edit pairs, %d steps); cached once done",
             len(captions), len(pairs), cfg.steps)
    parts = {"caption": 0.0, "direction": 0.0, "composed": 0.0}

    def texts(e, idx):
        mask = e["attention_mask"][idx]
        width = int(mask.sum(1).max())  # trim the padding this batch does not need
        return _features(model.get_text_features(input_ids=e["input_ids"][idx, :width], attention_mask=mask[:, :width]))

    for step in range(cfg.steps):
        if step % 100 == 0:
            log.info("tiny CLIP step %d/%d", step, cfg.steps)
        if pos + cfg.batch_size > len(order):
            order, pos = torch.randperm(len(captions), generator=gen), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        batch = _edit_batch(families, cfg.edit_batch, gen) if pairs else []
        # a family's images recur across its pairs: each image of the step goes through the tower once
        images, where = torch.unique(torch.tensor([pairs[k][:2] for k in batch], dtype=torch.long).view(-1, 2),
                                     return_inverse=True)
        img = _features(model.get_image_features(pixel_values=pix[torch.cat([idx, images])]))
        scale = model.logit_scale.exp()
        losses = {"caption": _info_nce(img[:len(idx)], texts(enc, idx), scale)}
        if batch:
            edit_img = img[len(idx):][where]
            b = torch.tensor(batch, dtype=torch.long)
            losses["direction"], losses["composed"] = edit_losses(
                texts(fwd, b), texts(rev, b), texts(null, torch.zeros(1, dtype=torch.long)),
                edit_img[:, 0], edit_img[:, 1], scale, texts(hard, b))
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        for k, v in losses.items():
            parts[k] = v.item()
    train_seconds = time.time() - t0
    # 3. save, then measure retrieval on held-out scenes through the saved folder
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    embedder = ClipEmbedder(out_dir, device="cpu")
    metrics = {"train_seconds": round(train_seconds, 1), "final_loss": round(loss.item(), 4),
               "final_losses": {k: round(v, 4) for k, v in parts.items()}, "train_images": len(captions),
               "train_edit_pairs": len(pairs), **evaluate_heldout(embedder, cfg)}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def evaluate_heldout(embedder: ClipEmbedder, cfg: TinyClipConfig, families: int = 100) -> dict:
    """``evaluate_retrieval`` and ``evaluate_edits`` on one held-out pool, rendered and embedded once."""
    rows = _world_rows(cfg, families, "tiny-clip-heldout")
    img = embedder.embed_images([r["image"] for r in rows])
    return {**evaluate_retrieval(embedder, rows, img), **evaluate_edits(embedder, rows, img, cfg.seed)}


def evaluate_retrieval(embedder: ClipEmbedder, rows: list[dict], img: np.ndarray) -> dict:
    """Image->caption and caption->image recall@1/@5 among held-out ShapesWorld scenes (``img``: their embeddings)."""
    captions = [r["caption"] for r in rows]
    sims = img @ embedder.embed_texts(captions).T
    truth = np.arange(len(captions))

    def recall(s: np.ndarray, k: int) -> float:
        top = np.argsort(-s, axis=1)[:, :k]
        return round(float((top == truth[:, None]).any(axis=1).mean()), 4)

    return {"heldout_images": len(captions), "image_to_caption_r1": recall(sims, 1),
            "image_to_caption_r5": recall(sims, 5), "caption_to_image_r1": recall(sims.T, 1)}


def evaluate_edits(embedder: ClipEmbedder, rows: list[dict], img: np.ndarray, seed: int) -> dict:
    """On held-out family pairs (``img``: the rows' embeddings): how often the text's direction score
    beats its reverse text's (``direction_vs_reverse``), a random other pair's text
    (``direction_vs_other``) and its hard negative text (``direction_vs_hard``)."""
    pairs = edit_pairs(rows, seed)
    n = len(pairs)
    t = embedder.embed_texts([p[k] for k in (2, 3, 4) for p in pairs]) - embedder.embed_texts([""])
    fwd, rev, hard = t[:n], t[n:2 * n], t[2 * n:3 * n]
    change = np.stack([img[b] - img[a] for a, b, *_ in pairs])

    def cos(x, y):
        return (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)

    good = cos(change, fwd)
    other = np.roll(fwd, len(pairs) // 2, axis=0)
    return {"heldout_edit_pairs": len(pairs), "direction_vs_reverse": round(float((good > cos(change, rev)).mean()), 4),
            "direction_vs_other": round(float((good > cos(change, other)).mean()), 4),
            "direction_vs_hard": round(float((good > cos(change, hard)).mean()), 4)}


def embedder_from_dict(config: dict | None = None, cache_dir: str | Path = "cache") -> ClipEmbedder:
    """``ClipEmbedder.from_config`` from a plain dict: the picklable form Ray workers build from."""
    return ClipEmbedder.from_config(EmbedderConfig.model_validate(config or {}), cache_dir)
