"""Tiny real-architecture checkpoints saved with save_pretrained (random weights, safetensors), and
a small photo folder: what the photo path loads, with nothing downloaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_tiny_clip(path: Path, image_size: int = 16) -> Path:
    """A CLIP folder (model, tokenizer, image processor) as save_pretrained writes it."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from pipeline.embedder import build_tokenizer

    tok = build_tokenizer()
    cfg = CLIPConfig(text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=32, pad_token_id=tok.pad_token_id,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
                     vision_config=dict(image_size=image_size, patch_size=8, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2), projection_dim=8)
    CLIPModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def save_tiny_mtst(path: Path) -> Path:
    """An MTST folder (InstructBLIP layout: vision encoder, Q-Former, Llama) with a word tokenizer."""
    from generators.mtst.config import INSTRUCTION
    from pipeline.shapesworld.sets.mtst import SeedSet
    from generators.mtst.model import MTSTGenerator
    from generators.mtst.tokenizer import build_word_tokenizer
    from tests.generators.conftest import SMALL

    import torch

    tok = build_word_tokenizer([*SeedSet.random(8, image_size=32, seed=0).texts(), INSTRUCTION])
    model = MTSTGenerator.tiny(tok, SMALL, seed=0)
    # Random weights mostly say the end token first (empty texts, rejected before any later stage
    # sees a row). Every output row on one direction v: logits = scale * (h . v), so greedy
    # decoding says "red" or "blue" (the largest and smallest scale), never the end token.
    head = model.language_model.get_output_embeddings().weight
    scale = torch.zeros(head.shape[0])
    scale[tok.convert_tokens_to_ids("red")], scale[tok.convert_tokens_to_ids("blue")] = 1.0, -1.0
    with torch.no_grad():
        head.copy_(scale[:, None] * torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0)))
    model.save_pretrained(path)
    return path


def save_tiny_ip2p(path: Path) -> Path:
    """An InstructPix2Pix pipeline folder (UNet, VAE, CLIP text encoder, scheduler)."""
    from generators.negatives.ip2p import random_pipeline

    random_pipeline("tiny").save_pretrained(path)
    return path


def photo_folder(root: Path, labels=("cats", "dogs"), per_label: int = 6, size: int = 32) -> Path:
    """Random-colour photos (a flat colour plus noise), PNG and JPEG, one subfolder per label."""
    rng = np.random.default_rng(0)
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            base = rng.integers(0, 256, 3)
            arr = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            fmt = "JPEG" if i % 2 else "PNG"
            Image.fromarray(arr, "RGB").save(root / label / f"{label}{i}.{fmt.lower().replace('jpeg', 'jpg')}",
                                             format=fmt)
    return root
