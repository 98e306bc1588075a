"""MTST generator: InstructBLIP parts, two images in, modification text out (arXiv 2504.05316).

Each image goes once through the vision encoder and the Q-Former (``encode_images``); a pair adds
a third Q-Former pass over both images' patches, and the LLM reads
``[proj(ref queries); proj(target queries); proj(joint queries); instruction]`` and writes the
text. The reverse text is the same model on (target, reference).

Two options of the tiny ShapesWorld model, off for a checkpoint unless saved with it:
``joint_difference`` adds a third block of (target - reference) patches to the joint pass, and
``interleave`` orders the LLM prefix region by region (ref q_i, target q_i, joint q_i) instead of
block by block, for region queries (``query_grid``), where query i of every pass is region i.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipQFormerConfig,
    InstructBlipQFormerModel,
    InstructBlipVisionConfig,
    InstructBlipVisionModel,
    LlamaConfig,
    PreTrainedTokenizerBase,
)

from generators.mtst.prompt import INSTRUCTION

if TYPE_CHECKING:  # the model runs without pydantic (e.g. on a bare GPU box)
    from generators.mtst.config import MTSTModelConfig

META_FILE = "mtst_config.json"
WEIGHTS_FILE = "model.safetensors"
# BLIP's preprocessing statistics (the OpenAI CLIP ones); a checkpoint's preprocessor_config wins.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
# How the parts are wired, beyond the InstructBLIP config: constructor arguments saved in META_FILE,
# with the value a model saved before each of them had.
LAYOUT = {"query_grid": None, "joint_difference": False, "interleave": False}


@dataclass
class ImageFeatures:
    """What one image contributes to every pair it is in: vision patches and its Q-Former queries."""

    patches: torch.Tensor  # [B, patches, vision hidden]
    queries: torch.Tensor  # [B, query tokens, Q-Former hidden]

    def __len__(self) -> int:
        return self.patches.shape[0]

    def __getitem__(self, idx) -> ImageFeatures:
        return ImageFeatures(self.patches[idx], self.queries[idx])


class MTSTGenerator(nn.Module):
    """InstructBLIP vision encoder + Q-Former + projection + causal LM, wired for image pairs."""

    def __init__(
        self,
        config: InstructBlipConfig,
        tokenizer: PreTrainedTokenizerBase,
        qformer_tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        train_all: bool = False,
        instruction: str = INSTRUCTION,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        base_model: str | None = None,
        parts: nn.Module | None = None,
        query_grid: int | None = None,
        joint_difference: bool = False,
        interleave: bool = False,
    ):
        super().__init__()
        self.config = config
        self.query_grid = query_grid
        self.joint_difference = bool(joint_difference)
        self.interleave = bool(interleave)
        self._windows = query_windows(config, query_grid)  # None: every query reads every patch
        self.tokenizer = _with_pad(tokenizer)
        self.qformer_tokenizer = _with_pad(qformer_tokenizer or tokenizer)
        self.instruction = instruction
        self.image_mean = tuple(float(x) for x in image_mean)
        self.image_std = tuple(float(x) for x in image_std)
        self.base_model = base_model
        if parts is None:  # fresh random weights from the configs
            self.vision_model = InstructBlipVisionModel._from_config(config.vision_config)
            q = torch.randn(1, config.num_query_tokens, config.qformer_config.hidden_size) * 0.02
            self.query_tokens = nn.Parameter(q)
            self.qformer = InstructBlipQFormerModel._from_config(config.qformer_config)
            self.language_projection = nn.Linear(config.qformer_config.hidden_size, config.text_config.hidden_size)
            self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        else:  # the parts of a loaded InstructBlipForConditionalGeneration, shared, not copied
            self.vision_model = parts.vision_model
            self.query_tokens = parts.query_tokens
            self.qformer = parts.qformer
            self.language_projection = parts.language_projection
            self.language_model = parts.language_model
        # Which image a patch came from, added to the patches of the joint Q-Former pass only: without
        # it that pass is the same for (ref, tgt) and (tgt, ref), and forward/reverse texts collapse.
        # Not in InstructBLIP; new and trained with the Q-Former.
        # With joint_difference, a third block of tokens (target - reference patches) gets a third one.
        seg = torch.randn(3 if self.joint_difference else 2, config.vision_config.hidden_size) * 0.02
        self.joint_segments = nn.Parameter(seg.to(self.query_tokens.dtype))
        self.qformer_ids = self.qformer_tokenizer(instruction, add_special_tokens=True)["input_ids"]
        ids = self.tokenizer(instruction, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        self.instruction_ids = ([bos] if bos is not None else []) + list(ids)
        self.lora = None  # {"rank", "alpha", "targets"} once adapters are on the LLM (generators/mtst/lora.py)
        self.set_trainable(train_all)

    # ---- building and loading -------------------------------------------------------------
    @classmethod
    def tiny(
        cls, tokenizer: PreTrainedTokenizerBase, config: MTSTModelConfig | None = None, *, seed: int = 0
    ) -> MTSTGenerator:
        """A small random model from ``config``'s sizes; every part trainable unless it says otherwise."""
        if config is None:
            from generators.mtst.config import MTSTModelConfig

            config = MTSTModelConfig()
        c = config
        tokenizer = _with_pad(tokenizer)
        vision = InstructBlipVisionConfig(
            hidden_size=c.vision_hidden, intermediate_size=4 * c.vision_hidden, num_hidden_layers=c.vision_layers,
            num_attention_heads=c.vision_heads, image_size=c.image_size, patch_size=c.patch_size,
            # 1/sqrt(width), not BERT's 0.02 (or the real default 1e-10, which is for loading weights):
            # at width 96, 0.02 leaves the image's share of the post-LN Q-Former output at a few percent,
            # the LM learns the text prior alone and never picks the images up.
            initializer_range=c.vision_hidden**-0.5,
        )
        qformer = InstructBlipQFormerConfig(
            vocab_size=len(tokenizer), hidden_size=c.qformer_hidden, num_hidden_layers=c.qformer_layers,
            num_attention_heads=c.qformer_heads, intermediate_size=4 * c.qformer_hidden,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64,
            cross_attention_frequency=1, pad_token_id=tokenizer.pad_token_id, initializer_range=c.qformer_hidden**-0.5,
        )
        llm = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=c.llm_hidden, intermediate_size=2 * c.llm_hidden,
            num_hidden_layers=c.llm_layers, num_attention_heads=c.llm_heads, num_key_value_heads=c.llm_heads,
            max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
        )
        ib = InstructBlipConfig(
            vision_config=vision, qformer_config=qformer, text_config=llm, num_query_tokens=c.num_query_tokens
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(
                ib, tokenizer, train_all=True if c.train_all is None else c.train_all, instruction=c.instruction,
                query_grid=c.query_grid, joint_difference=c.joint_difference, interleave=c.interleave_prefix,
            )

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None,
        train_all: bool | None = None, merge_lora: bool = True,
    ) -> MTSTGenerator:
        """Load a dir saved by ``save_pretrained``, or an InstructBLIP checkpoint (hub id or path);
        LoRA adapters saved with it are merged into the LLM unless ``merge_lora`` is False (resuming)."""
        path = Path(path_or_id)
        if not (path / META_FILE).is_file():
            model = cls._from_instructblip(str(path_or_id), dtype=dtype, train_all=bool(train_all))
            return model.to(device) if device is not None else model
        meta = json.loads((path / META_FILE).read_text())
        tok = AutoTokenizer.from_pretrained(path / "tokenizer")
        qtok = AutoTokenizer.from_pretrained(path / "qformer_tokenizer")
        kw = dict(instruction=meta["instruction"], image_mean=meta["image_mean"], image_std=meta["image_std"])
        ta = meta["train_all"] if train_all is None else train_all
        layout = {k: meta.get(k, default) for k, default in LAYOUT.items()}
        if meta["weights"] == "trained":  # only the trained parts are here; the rest is the base checkpoint
            model = cls._from_instructblip(meta["base_model"], dtype=dtype, train_all=ta, **layout)
            model.tokenizer, model.qformer_tokenizer = tok, qtok
            if meta.get("lora"):
                from generators.mtst.lora import add_lora

                add_lora(model, **meta["lora"])
            missing, unexpected = model.load_state_dict(load_file(path / WEIGHTS_FILE), strict=False)
            frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
            if unexpected or set(missing) - frozen - _buffers(model):
                raise ValueError(f"{path}: weights do not fit the base {meta['base_model']!r}: {unexpected or missing}")
            if meta.get("lora") and merge_lora:
                from generators.mtst.lora import merge_lora as merge

                merge(model)
        else:
            config = InstructBlipConfig.from_pretrained(path)
            model = cls(config, tok, qtok, train_all=ta, base_model=meta.get("base_model"), **layout, **kw)
            load_model(model, path / WEIGHTS_FILE)
            if dtype is not None:
                model.to(dtype)
        model.image_mean, model.image_std = tuple(meta["image_mean"]), tuple(meta["image_std"])
        return model.to(device) if device is not None else model

    @classmethod
    def _from_instructblip(
        cls, path_or_id: str, *, dtype: torch.dtype | None, train_all: bool, **layout
    ) -> MTSTGenerator:
        """An InstructBLIP checkpoint's parts, wired with ``layout`` (LAYOUT's keys; its defaults if none)."""
        ib = InstructBlipForConditionalGeneration.from_pretrained(
            path_or_id, use_safetensors=True, trust_remote_code=False, dtype=dtype or torch.float32
        )
        tok = AutoTokenizer.from_pretrained(path_or_id)
        try:
            qtok = AutoTokenizer.from_pretrained(path_or_id, subfolder="qformer_tokenizer")
        except (OSError, ValueError):  # a checkpoint that shares one tokenizer
            qtok = tok
        mean, std = _image_stats(path_or_id)
        return cls(
            ib.config, tok, qtok, train_all=train_all, image_mean=mean, image_std=std, base_model=path_or_id, parts=ib,
            **layout,
        )

    def save_pretrained(self, save_dir: str | Path) -> Path:
        """Write config, safetensors weights (only the trained parts when a base checkpoint has the rest), tokenizers."""
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        partial = self.base_model is not None and not self.train_all
        meta = {
            "format": "cirforge-mtst", "version": 1, "weights": "trained" if partial else "full",
            "base_model": self.base_model, "train_all": self.train_all, "instruction": self.instruction,
            "image_mean": list(self.image_mean), "image_std": list(self.image_std),
            **{k: getattr(self, k) for k in LAYOUT}, "lora": self.lora,
        }
        self.config.save_pretrained(save_dir)
        if partial:
            trained = {k: p.detach().contiguous() for k, p in self.named_parameters() if p.requires_grad}
            save_file(trained, save_dir / WEIGHTS_FILE)
        else:
            save_model(self, str(save_dir / WEIGHTS_FILE))
        self.tokenizer.save_pretrained(save_dir / "tokenizer")
        self.qformer_tokenizer.save_pretrained(save_dir / "qformer_tokenizer")
        (save_dir / META_FILE).write_text(json.dumps(meta, indent=2))
        return save_dir

    def save_llm(self, save_dir: str | Path) -> Path:
        """Write the LLM alone with its tokenizer (what vLLM serves from prompt embeddings)."""
        save_dir = Path(save_dir)
        self.language_model.save_pretrained(save_dir)
        self.tokenizer.save_pretrained(save_dir)
        return save_dir

    # ---- training mode --------------------------------------------------------------------
    def set_trainable(self, train_all: bool) -> None:
        """Real size: vision encoder and LLM frozen; Q-Former, queries, joint segments, projection trained; or all."""
        self.train_all = bool(train_all)
        self.requires_grad_(True)
        if not self.train_all:
            self.vision_model.requires_grad_(False)
            self.language_model.requires_grad_(False)

    def set_dropout(self, p: float) -> None:
        """Dropout ``p`` in the Q-Former (hidden states and attention) and in the LLM's attention (the
        vision encoder stays without); frozen parts run in eval mode, so it acts on what is trained."""
        qc, tc = self.config.qformer_config, self.config.text_config
        qc.hidden_dropout_prob = qc.attention_probs_dropout_prob = tc.attention_dropout = float(p)
        for module in (*self.qformer.modules(), *self.language_model.modules()):
            if isinstance(module, nn.Dropout):
                module.p = float(p)
            if isinstance(getattr(module, "attention_dropout", None), float):
                module.attention_dropout = float(p)

    def train(self, mode: bool = True) -> MTSTGenerator:
        super().train(mode)
        if not self.train_all:  # frozen parts never run dropout
            self.vision_model.eval()
            self.language_model.eval()
        return self

    # ---- forward pieces -------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.query_tokens.device

    @property
    def dtype(self) -> torch.dtype:
        return self.language_projection.weight.dtype

    def preprocess(self, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
        """PIL images or HxWx3 uint8 arrays -> normalized pixel tensor [B, 3, S, S] on CPU."""
        size = self.config.vision_config.image_size
        out = []
        for im in images:
            im = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, dtype=np.uint8))
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BICUBIC)
            out.append(np.asarray(im, dtype=np.float32) / 255.0)
        arr = (np.stack(out) - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def encode_images(self, pixel_values: torch.Tensor) -> ImageFeatures:
        """Vision encoder + per-image Q-Former pass for a batch of images; reuse the result across pairs."""
        return self.encode_patches(self.encode_vision(pixel_values))

    def encode_vision(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The vision encoder alone: patch embeddings [B, 1 + patches, vision hidden] on the model's device."""
        pv = pixel_values.to(self.device, self.vision_model.dtype)
        return self.vision_model(pixel_values=pv).last_hidden_state

    def encode_patches(self, patches: torch.Tensor) -> ImageFeatures:
        """The per-image Q-Former pass over vision patches computed before (a frozen vision encoder's)."""
        return ImageFeatures(patches, self._qformer(patches))

    def _qformer(self, patches: torch.Tensor, n_images: int = 1) -> torch.Tensor:
        """The Q-Former over ``n_images`` images' patches, concatenated along the sequence."""
        b, n_query = patches.shape[0], self.query_tokens.shape[1]
        ids = torch.tensor([self.qformer_ids], device=patches.device).expand(b, -1)
        mask = torch.ones(b, n_query + ids.shape[1], dtype=torch.long, device=patches.device)
        if self._windows is None:
            patch_mask = torch.ones(patches.shape[:2], dtype=torch.long, device=patches.device)
        else:  # additive [B, 1, queries, patches]: each query reads its window of every image
            allowed = self._windows.to(patches.device).repeat(1, n_images)
            bias = torch.zeros(allowed.shape, dtype=patches.dtype, device=patches.device)
            bias.masked_fill_(~allowed, torch.finfo(patches.dtype).min)
            patch_mask = bias[None, None].expand(b, 1, -1, -1)
        out = self.qformer(
            input_ids=ids,
            attention_mask=mask,
            query_embeds=self.query_tokens.expand(b, -1, -1),
            encoder_hidden_states=patches,
            encoder_attention_mask=patch_mask,
        )
        return out.last_hidden_state[:, :n_query]

    def prefix_embeds(self, ref: ImageFeatures, tgt: ImageFeatures) -> torch.Tensor:
        """LLM input before the text: [proj(ref q); proj(tgt q); proj(joint q); instruction], [B, L, H]
        (with ``interleave``, the queries region by region: ref q_0, tgt q_0, joint q_0, ref q_1, ...)."""
        seg = self.joint_segments.to(ref.patches.dtype)
        blocks = [ref.patches + seg[0], tgt.patches + seg[1]]
        if self.joint_difference:
            blocks.append(tgt.patches - ref.patches + seg[2])
        joint = self._qformer(torch.cat(blocks, dim=1), n_images=len(blocks))
        if self.interleave:  # region by region: ref q_i, target q_i, joint q_i, ...
            queries = torch.stack([ref.queries, tgt.queries, joint], dim=2).flatten(1, 2)
        else:
            queries = torch.cat([ref.queries, tgt.queries, joint], dim=1)
        visual = self.language_projection(queries.to(self.dtype))
        embed = self.language_model.get_input_embeddings()
        instr = embed(torch.tensor([self.instruction_ids], device=visual.device)).expand(visual.shape[0], -1, -1)
        return torch.cat([visual.to(instr.dtype), instr], dim=1)

    def loss(self, ref: ImageFeatures, tgt: ImageFeatures, texts: Sequence[str]) -> torch.Tensor:
        """Mean next-token cross-entropy over the text tokens (and EOS) only, not the prefix."""
        prefix = self.prefix_embeds(ref, tgt)
        b, n_prefix = prefix.shape[:2]
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        seqs = [ids + [eos] for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        width = max(len(s) for s in seqs)
        ids = torch.full((b, width), pad, dtype=torch.long)
        text_mask = torch.zeros((b, width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            text_mask[i, : len(s)] = 1
        ids, text_mask = ids.to(prefix.device), text_mask.to(prefix.device)
        inputs = torch.cat([prefix, self.language_model.get_input_embeddings()(ids)], dim=1)
        mask = torch.cat([torch.ones(b, n_prefix, dtype=torch.long, device=prefix.device), text_mask], dim=1)
        labels = torch.cat(
            [torch.full((b, n_prefix), -100, device=prefix.device), ids.masked_fill(text_mask == 0, -100)], dim=1
        )
        return self.language_model(inputs_embeds=inputs, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def generate(
        self, ref: ImageFeatures, tgt: ImageFeatures, *, num_beams: int = 1, max_new_tokens: int = 32
    ) -> list[str]:
        """Greedy (num_beams=1) or beam-search text for each (ref[i], tgt[i])."""
        prefix = self.prefix_embeds(ref, tgt)
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
            eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        out = self.language_model.generate(inputs_embeds=prefix, attention_mask=mask, generation_config=gen)
        return self.decode(out.tolist())

    def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """Token ids -> texts, cut at the first EOS (both backends decode through here)."""
        eos = self.tokenizer.eos_token_id
        texts = []
        for ids in token_ids:
            ids = list(ids)
            if eos in ids:
                ids = ids[: ids.index(eos)]
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            texts.append(_SPACE_BEFORE_PUNCT.sub(r"\1", text))
        return texts


def query_windows(config: InstructBlipConfig, grid: int | None) -> torch.Tensor | None:
    """Which patches each query may read: ``[queries, 1 + patches]`` bool, or None (all of them).

    With ``grid`` g the queries tile the image as a g x g grid (query r * g + c is region (r, c)) and
    each reads the vision patches inside its region plus the CLS token; the patch grid is cut into
    g x g near-equal regions. InstructBLIP's queries read every patch (``grid`` None): pooled over the
    whole image, a change in one place moves every query a little, and the tiny ShapesWorld model did
    not learn which cell changed; region queries keep each cell's content apart, per image and in the
    joint pass, so a changed region shows in its own query.
    """
    if grid is None:
        return None
    n_query = config.num_query_tokens
    side = config.vision_config.image_size // config.vision_config.patch_size
    if n_query != grid * grid or side < grid:
        raise ValueError(f"query_grid={grid} needs num_query_tokens={grid * grid} (got {n_query}) "
                         f"and at least {grid} patches a side (got {side})")
    allowed = torch.zeros(n_query, 1 + side * side, dtype=torch.bool)
    allowed[:, 0] = True  # CLS
    for pr in range(side):
        for pc in range(side):
            allowed[(pr * grid // side) * grid + pc * grid // side, 1 + pr * side + pc] = True
    return allowed


def _with_pad(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    # Vicuna's tokenizer has no pad token; padding is masked out, so unk (or eos) serves.
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok


def _buffers(model: nn.Module) -> set[str]:
    return {k for k, _ in model.named_buffers()}


def _image_stats(path_or_id: str) -> tuple[Sequence[float], Sequence[float]]:
    from transformers.utils import cached_file

    try:
        f = cached_file(path_or_id, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        f = None
    if not f:
        return CLIP_MEAN, CLIP_STD
    d = json.loads(Path(f).read_text())
    return d.get("image_mean", CLIP_MEAN), d.get("image_std", CLIP_STD)
