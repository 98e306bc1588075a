"""The text stage: MTST forward and reverse modification texts for a batch of image pairs."""
from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from generators.mtst.config import MTSTInferConfig
from generators.mtst.model import META_FILE, ImageFeatures, MTSTGenerator
from generators.mtst.vllm_backend import VLLMDecoder, require_vllm
from generators.mtst.pair_decode import PairDecoder
from pipeline.stage import Batch, Stage, batch_len, to_list

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class MTSTTextStage(Stage):
    """Writes ``modification_text`` (reference -> target) and ``reverse_text`` (target -> reference)."""

    name: ClassVar[str] = "mtst_text"
    reads = ("reference_id", "target_id", "reference_image", "target_image")
    writes = ("modification_text", "reverse_text")
    num_gpus: ClassVar[float] = 1.0 if torch.cuda.is_available() else 0.0
    batch_size: ClassVar[int] = 64

    def __init__(self, model_path: str | Path, config: MTSTInferConfig | None = None):
        self.config = cfg = config or MTSTInferConfig()
        if cfg.backend == "vllm":
            require_vllm()  # before the model loads: a missing backend fails in seconds, not minutes
        device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        self.model = MTSTGenerator.from_pretrained(model_path, dtype=DTYPES[cfg.dtype], device=device).eval()
        # The benchmarked path (benchmarks/bench_mtst_gpu.py): features once per image, both directions
        # decoded in fixed-size batches; greedy uses a static KV cache, beam search a dynamic one.
        self.pairs = PairDecoder(
            self.model, batch_size=cfg.batch_size, image_batch_size=cfg.batch_size, new_tokens=cfg.max_new_tokens,
            exact=False, cache="static" if cfg.num_beams == 1 and cfg.static_cache else "dynamic",
            num_beams=cfg.num_beams,
        )
        self.decoder = None
        if cfg.backend == "vllm":
            self.decoder = VLLMDecoder(
                _llm_dir(self.model, Path(model_path)), dtype=cfg.dtype,
                gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, eos_token_id=self.model.tokenizer.eos_token_id,
                max_model_len=min(self.model.config.text_config.max_position_embeddings, 4096),
            )

    def teardown(self) -> None:
        """Release the vLLM engine (its worker processes), if any."""
        if self.decoder is not None:
            self.decoder.close()
            self.decoder = None

    def process(self, batch: Batch) -> Batch:
        n = batch_len(batch)
        # 1. each distinct image id of the batch is decoded and encoded once
        slot: dict[str, int] = {}
        images = []
        for id_col, img_col in (("reference_id", "reference_image"), ("target_id", "target_image")):
            for key, img in zip(to_list(batch[id_col]), to_list(batch[img_col])):
                if str(key) not in slot:
                    slot[str(key)] = len(images)
                    images.append(load_image(img))
        ref = [slot[str(k)] for k in to_list(batch["reference_id"])]
        tgt = [slot[str(k)] for k in to_list(batch["target_id"])]
        # 2. both directions in one decode call
        forward, reverse = self.describe(images, ref, tgt)
        batch["modification_text"], batch["reverse_text"] = forward, reverse
        for i in range(n):
            if not forward[i]:
                self.reject(batch, i, "empty_text")
            elif not reverse[i]:
                self.reject(batch, i, "empty_reverse_text")
        return batch

    def describe(self, images: Sequence, ref: Sequence[int], tgt: Sequence[int]) -> tuple[list[str], list[str]]:
        """Forward and reverse texts for pairs (images[ref[i]], images[tgt[i]])."""
        n = len(ref)
        texts = self.texts(images, [*ref, *tgt], [*tgt, *ref])
        return texts[:n], texts[n:]

    @torch.no_grad()
    def texts(self, images: Sequence, ref: Sequence[int], tgt: Sequence[int]) -> list[str]:
        """One text per pair (images[ref[i]], images[tgt[i]]), in that direction only."""
        feats = self.encode(images)
        if self.decoder is None:
            return self.pairs.decode(feats, list(ref), list(tgt))
        return self._vllm(feats, list(ref), list(tgt))

    def encode(self, images: Sequence) -> ImageFeatures:
        """Vision + per-image Q-Former features, ``config.batch_size`` images at a time."""
        return self.pairs.encode(images)

    def _vllm(self, feats: ImageFeatures, ref: list[int], tgt: list[int]) -> list[str]:
        bs = self.config.batch_size
        prefix = torch.cat([self.model.prefix_embeds(feats[ref[i : i + bs]], feats[tgt[i : i + bs]])
                            for i in range(0, len(ref), bs)])
        return self.model.decode(self.decoder.generate_ids(prefix.float(), self.config.max_new_tokens))


def load_image(value) -> Image.Image:
    """An image cell: HF layout ``{"bytes", "path"}``, raw bytes, a path, a PIL image or an HxWx3 array."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
        if value.get("path"):
            return Image.open(value["path"]).convert("RGB")
        raise ValueError("image cell has neither bytes nor path")
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(value)).convert("RGB")
    if isinstance(value, (str, Path)):
        return Image.open(value).convert("RGB")
    return Image.fromarray(np.asarray(value, dtype=np.uint8)).convert("RGB")


def _llm_dir(model: MTSTGenerator, model_path: Path) -> Path:
    """The LLM saved alone beside the model (once), or in a temporary dir when that is not writable."""
    target = model_path / "llm"
    if (target / "config.json").is_file():
        return target
    if (model_path / META_FILE).is_file():
        tmp = model_path / f"tmp-llm-{id(model)}"
        try:
            model.save_llm(tmp)
            tmp.rename(target)
            return target
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if (target / "config.json").is_file():  # another worker got there first
                return target
    return model.save_llm(tempfile.mkdtemp(prefix="mtst-llm-"))
