"""Batched forward + reverse text for many pairs over a pool: the MTST inference path.

Vision encoder and per-image Q-Former run once per distinct image; every pair and both of its
directions reuse those features. Texts are decoded in fixed-size batches (the last one padded),
so a static KV cache and a compiled decode step see one shape for the whole run.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import GenerationConfig

from generators.mtst.model import ImageFeatures, MTSTGenerator


def greedy_config(model: MTSTGenerator, new_tokens: int, *, cache: str = "dynamic", exact: bool = True,
                  compile: bool = False, num_beams: int = 1) -> GenerationConfig:
    """Greedy (or beam) decoding of ``new_tokens`` (exactly, when ``exact``), dynamic or static cache."""
    tok = model.tokenizer
    kw = dict(max_new_tokens=new_tokens, num_beams=num_beams, do_sample=False, eos_token_id=tok.eos_token_id,
              pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    if exact:
        kw["min_new_tokens"] = new_tokens
    if cache == "static":
        kw.update(cache_implementation="static", disable_compile=not compile)
    return GenerationConfig(**kw)


class PairDecoder:
    """Encodes a pool once, then writes texts for (ref, tgt) index pairs in fixed-size batches."""

    def __init__(self, model: MTSTGenerator, *, batch_size: int = 256, image_batch_size: int = 64,
                 new_tokens: int = 32, exact: bool = True, cache: str = "dynamic", compile: bool = False,
                 num_beams: int = 1):
        self.model = model
        self.batch_size = batch_size
        self.image_batch_size = image_batch_size
        self.static = cache == "static"
        self.gen = greedy_config(model, new_tokens, cache=cache, exact=exact, compile=compile, num_beams=num_beams)

    @torch.no_grad()
    def encode(self, images: Sequence) -> ImageFeatures:
        """Vision + Q-Former features of every image, ``image_batch_size`` at a time."""
        m, bs = self.model, self.image_batch_size
        parts = [m.encode_images(m.preprocess(images[i:i + bs])) for i in range(0, len(images), bs)]
        return ImageFeatures(torch.cat([p.patches for p in parts]), torch.cat([p.queries for p in parts]))

    @torch.no_grad()
    def decode(self, feats: ImageFeatures, ref: Sequence[int], tgt: Sequence[int]) -> list[str]:
        """Texts for pairs (feats[ref[i]] -> feats[tgt[i]])."""
        out: list[str] = []
        if not len(ref):
            return out
        bs = min(self.batch_size, len(ref))  # a call with fewer texts than a batch is not padded up
        for i in range(0, len(ref), bs):
            r, t = list(ref[i:i + bs]), list(tgt[i:i + bs])
            real = len(r)
            if self.static and real < bs:  # one shape for the whole call; padded rows are dropped
                r += [r[-1]] * (bs - real)
                t += [t[-1]] * (bs - real)
            prefix = self.model.prefix_embeds(feats[r], feats[t])
            mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
            ids = self.model.language_model.generate(inputs_embeds=prefix, attention_mask=mask,
                                                     generation_config=self.gen)
            out += self.model.decode(ids[:real].tolist())
        return out

    def describe(self, images: Sequence, ref: Sequence[int], tgt: Sequence[int]) -> tuple[list[str], list[str]]:
        """Forward and reverse texts for pairs (images[ref[i]], images[tgt[i]])."""
        feats = self.encode(images)
        n = len(ref)
        texts = self.decode(feats, list(ref) + list(tgt), list(tgt) + list(ref))
        return texts[:n], texts[n:]
