"""The diffusers InstructPix2Pix editor: many (image, instruction, seed) edits per pipeline call.

Real: ``timbrooks/instruct-pix2pix`` by hub id or local folder, safetensors only. Tiny: the same
classes from small configs (``random_pipeline("tiny")``), saved and loaded with the same code.
Each edit has its own seeded CPU generator, so an edit's output does not depend on which other
edits share its batch (up to float rounding) nor on the device's random stream.
This module imports nothing from pipeline.config: the GPU benchmark runs it without pydantic.
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generators.negatives.editors import EditRequest, EditResult

DEFAULT_MODEL = "timbrooks/instruct-pix2pix"


def _require():
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:  # fail at construction, not inside a run
        raise ImportError(f"negatives.editor=instruct_pix2pix needs diffusers and torch ({err}): "
                          "pip install 'diffusers==0.42.1' torch") from None


def _dtype(name: str, device: str):
    import torch

    return torch.float32 if device == "cpu" else getattr(torch, name)


class InstructPix2PixEditor:
    """Batched InstructPix2Pix; ``edit_batch`` keeps request order and returns PNG image structs."""

    def __init__(self, model: str = DEFAULT_MODEL, revision: str | None = None, device: str = "auto",
                 dtype: str = "float16", steps: int = 20, guidance_scale: float = 7.5,
                 image_guidance_scale: float = 1.5, resolution: int = 512, batch_size: int = 16,
                 channels_last: bool = False, compile_unet: bool = False, compile_mode: str = "default",
                 fuse_qkv: bool = False, sdpa_backend: str | None = None, pipeline: Any = None):
        _require()
        import torch
        from diffusers import StableDiffusionInstructPix2PixPipeline

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.dtype = _dtype(dtype, self.device)
        self.steps, self.resolution, self.batch_size = steps, resolution, batch_size
        self.guidance_scale, self.image_guidance_scale = guidance_scale, image_guidance_scale
        self.editor_id = f"{model}@{revision}" if revision else str(model)
        if pipeline is None:
            pipeline = StableDiffusionInstructPix2PixPipeline.from_pretrained(
                model, revision=revision, torch_dtype=self.dtype, use_safetensors=True,
                safety_checker=None, requires_safety_checker=False)
        self.pipe = pipeline.to(self.device, self.dtype)
        self.pipe.set_progress_bar_config(disable=True)
        if self.device == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes per batch: pick the fastest conv kernels once
            if channels_last:
                self.pipe.unet.to(memory_format=torch.channels_last)
                self.pipe.vae.to(memory_format=torch.channels_last)
            if fuse_qkv:
                self.pipe.unet.fuse_qkv_projections()  # one matmul for q, k, v
            if compile_unet:
                self.pipe.unet = torch.compile(self.pipe.unet, fullgraph=True, mode=compile_mode)
                self.pipe.vae.decode = torch.compile(self.pipe.vae.decode, mode=compile_mode)
        # cuda: pin scaled-dot-product attention to one kernel family ("flash", "cudnn", "efficient")
        self._sdpa = _sdpa_backends(sdpa_backend) if sdpa_backend else None
        self._pool = ThreadPoolExecutor(max_workers=4)  # PNG encode/decode off the GPU's critical path

    def edit_images(self, images: list, instructions: list[str], seeds: list[int]) -> list:
        """PIL images in, PIL images out (at the edit resolution), in chunks of batch_size."""
        out = []
        for i in range(0, len(images), self.batch_size):
            out.extend(self._edit_chunk(images[i:i + self.batch_size], instructions[i:i + self.batch_size],
                                        seeds[i:i + self.batch_size]))
        return out

    def _edit_chunk(self, images: list, instructions: list[str], seeds: list[int]) -> list:
        """One pipeline call (the three guidance branches ride in one UNet batch per step)."""
        import contextlib

        import torch

        imgs = [im.convert("RGB").resize((self.resolution, self.resolution)) for im in images]
        gens = [torch.Generator("cpu").manual_seed(int(s) % (1 << 63)) for s in seeds]
        pin = self._sdpa and self.device == "cuda"
        attn = torch.nn.attention.sdpa_kernel(self._sdpa) if pin else contextlib.nullcontext()
        with torch.inference_mode(), attn:
            res = self.pipe(prompt=list(instructions), image=imgs, num_inference_steps=self.steps,
                            guidance_scale=self.guidance_scale, image_guidance_scale=self.image_guidance_scale,
                            generator=gens, output_type="pil")
        return res.images

    def edit_batch(self, requests: list[EditRequest]) -> list[EditResult | None]:
        todo = [k for k, r in enumerate(requests) if r.image is not None]
        sources = list(self._pool.map(lambda k: decode_struct(requests[k].image), todo))
        futures = []  # PNG encodes of one chunk run on the pool while the next chunk is on the GPU
        for i in range(0, len(todo), self.batch_size):
            part = todo[i:i + self.batch_size]
            edited = self._edit_chunk(sources[i:i + len(part)], [requests[k].instruction for k in part],
                                      [requests[k].seed for k in part])
            futures += [self._pool.submit(_png_at, im, src.size) for im, src in zip(edited, sources[i:i + len(part)])]
        out: list[EditResult | None] = [None] * len(requests)
        for k, f in zip(todo, futures):
            out[k] = EditResult(f.result())
        return out


def _sdpa_backends(name: str) -> list:
    from torch.nn.attention import SDPBackend

    known = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    if name not in known:
        raise ValueError(f"sdpa_backend={name!r} is not known; use one of {', '.join(known)} (or leave it unset)")
    return [known[name]]


def decode_struct(image: dict):
    """A PIL RGB image from an HF Image struct (bytes, else path)."""
    from PIL import Image

    src = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
    with Image.open(src) as im:
        return im.convert("RGB")


def _png_at(image, size) -> dict:
    buf = io.BytesIO()
    (image if image.size == size else image.resize(size)).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def random_pipeline(scale: str = "tiny", seed: int = 0):
    """An InstructPix2Pix pipeline with random weights: "tiny" for tests, "sd15" at SD1.5 size."""
    import torch
    from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    if scale == "sd15":
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=8, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
        text = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              max_position_embeddings=77, vocab_size=49408)
    elif scale == "tiny":
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=8, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                            block_out_channels=(8, 16), norm_num_groups=8, sample_size=32,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        text = CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              max_position_embeddings=77, vocab_size=1000, pad_token_id=0, bos_token_id=2,
                              eos_token_id=3)
    else:
        raise ValueError(f"scale must be 'tiny' or 'sd15', got {scale!r}")
    return StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=CLIPTextModel(text), tokenizer=word_tokenizer(text.vocab_size), unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def word_tokenizer(vocab_size: int = 1000, max_length: int = 77):
    """A word-level fast tokenizer built locally (no download): unknown words map to [UNK]."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + [f"w{i}" for i in range(vocab_size - 4)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]", eos_token="[EOS]", model_max_length=max_length)
