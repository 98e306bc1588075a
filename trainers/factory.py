"""From config to model and tokenizer (open_clip's factory), and model save / load (safetensors only)."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Iterable

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, Blip2Config, Blip2ForImageTextRetrieval, CLIPConfig, CLIPModel, PreTrainedTokenizerFast

from trainers.clip4cir import Clip4Cir
from trainers.config import ModelConfig
from trainers.detailfusion import DetailFusion
from trainers.qformer import QFormerCIR

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "cirforge_model.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MODELS = {"qformer_cir": QFormerCIR, "detailfusion": DetailFusion}


def build_word_tokenizer(texts: Iterable[str], max_len: int = 32) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over the words of ``texts`` ([CLS] text [SEP], lower case), for tiny models."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_len,
    )


def load_tokenizer(cfg: ModelConfig):
    """The real model's tokenizer (BERT's, as shipped with the checkpoint), loaded locally."""
    return AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.checkpoint)


def tiny_blip2_config(cfg: ModelConfig, vocab_size: int, pad_token_id: int = 0) -> Blip2Config:
    """A small BLIP-2 config: the real architecture with tiny widths."""
    t = cfg.tiny
    config = Blip2Config(
        vision_config=dict(
            hidden_size=t.vision_hidden, intermediate_size=2 * t.vision_hidden, num_hidden_layers=t.vision_layers,
            num_attention_heads=t.heads, image_size=cfg.image_size, patch_size=t.patch_size,
            # BLIP-2's vision default (1e-10) assumes pretrained weights; random ones need a real spread.
            initializer_range=t.init_std, attention_dropout=t.dropout,
        ),
        qformer_config=dict(
            hidden_size=t.qformer_hidden, num_hidden_layers=t.qformer_layers, num_attention_heads=t.heads,
            intermediate_size=2 * t.qformer_hidden, encoder_hidden_size=t.vision_hidden, vocab_size=vocab_size,
            cross_attention_frequency=1, use_qformer_text_input=True, max_position_embeddings=t.max_text_len,
            pad_token_id=pad_token_id, initializer_range=t.init_std,
            hidden_dropout_prob=t.dropout, attention_probs_dropout_prob=t.dropout,
        ),
        text_config=dict(model_type="opt", hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                         ffn_dim=16, vocab_size=8, word_embed_proj_dim=16),
        num_query_tokens=t.num_query_tokens,
        image_text_hidden_size=t.embed_dim,
    )
    if t.query_grid is not None:  # an extra config key: saved with the model, read by QFormerBranch
        config.query_grid = t.query_grid
    if t.region_scores:
        config.region_scores = True
    if t.conv_stem:  # likewise, read by install_stem
        config.conv_stem = t.conv_stem
    return config


class ConvStem(nn.Module):
    """Two stride-2 3x3 convolutions, pooled to the patch grid and projected to the vision width.

    Stands in for the ViT's linear patch embedding (same output: (B, width, side, side)), so the rest of
    the BLIP-2 vision tower is unchanged. A ViT learns shapes from scratch slowly on a few thousand
    images; local filters see edges and corners at once (the ShapesWorld cells are 21 px)."""

    def __init__(self, channels: int, width: int, side: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.GELU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.proj = nn.Conv2d(channels, width, 1)

    @property
    def weight(self) -> torch.Tensor:  # Blip2VisionEmbeddings reads the patch embedding's dtype from it
        return self.proj.weight

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.convs(pixel_values)))


def install_stem(hf: Blip2ForImageTextRetrieval) -> Blip2ForImageTextRetrieval:
    """Replace the patch embedding by a ``ConvStem`` when the config asks for one (tiny models)."""
    channels = getattr(hf.config, "conv_stem", 0)
    if channels:
        v = hf.config.vision_config
        hf.vision_model.embeddings.patch_embedding = ConvStem(channels, v.hidden_size, v.image_size // v.patch_size)
    return hf


def _init_query_tokens(hf: Blip2ForImageTextRetrieval) -> None:
    # transformers inits query tokens to zeros: identical tokens would stay identical forever under
    # max-sim, so start them as LAVIS does (normal, std = initializer_range).
    with torch.no_grad():
        hf.query_tokens.normal_(0.0, hf.config.qformer_config.initializer_range)


def checkpoint_type(checkpoint: str | Path) -> str | None:
    """The ``model_type`` of a local checkpoint folder's config.json (None for a hub id or no file)."""
    f = Path(checkpoint) / "config.json"
    return json.loads(f.read_text()).get("model_type") if f.is_file() else None


def tiny_clip_config(cfg: ModelConfig, tokenizer) -> CLIPConfig:
    """A small CLIP config from the same tiny sizes (text pooled at the tokenizer's [SEP])."""
    t = cfg.tiny
    text = dict(vocab_size=len(tokenizer), hidden_size=t.qformer_hidden, intermediate_size=2 * t.qformer_hidden,
                num_hidden_layers=t.qformer_layers, num_attention_heads=t.heads, max_position_embeddings=t.max_text_len,
                pad_token_id=tokenizer.pad_token_id or 0, bos_token_id=tokenizer.cls_token_id,
                eos_token_id=tokenizer.sep_token_id, initializer_range=t.init_std)
    vision = dict(hidden_size=t.vision_hidden, intermediate_size=2 * t.vision_hidden, num_hidden_layers=t.vision_layers,
                  num_attention_heads=t.heads, image_size=cfg.image_size, patch_size=t.patch_size,
                  initializer_range=t.init_std)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=t.embed_dim)


def _clip_model(clip: CLIPModel, cfg: ModelConfig) -> nn.Module:
    model = Clip4Cir(clip, temperature=cfg.temperature, freeze_vision=cfg.vision_frozen,
                     projection=cfg.combiner_projection, hidden=cfg.combiner_hidden)
    model.model_config = cfg
    return model


def load_blip2(checkpoint: str | Path) -> Blip2ForImageTextRetrieval:
    """BLIP-2 vision tower + Q-Former from a checkpoint (safetensors), with the Q-Former text path on.

    A ``Blip2ForImageTextRetrieval`` checkpoint loads whole. A ``Blip2Model`` / generation checkpoint
    (e.g. blip2-opt-2.7b) has no text path: its text feed-forward starts as a copy of the query one,
    and word embeddings and projections start random.
    """
    if checkpoint_type(checkpoint) not in (None, "blip-2"):
        raise ValueError(f"{checkpoint} is a {checkpoint_type(checkpoint)!r} checkpoint, not BLIP-2: for a CLIP "
                         f"checkpoint set model.kind='clip4cir' (the CLIP4Cir combiner)")
    config = Blip2Config.from_pretrained(checkpoint)
    had_text = bool(config.qformer_config.use_qformer_text_input)
    config.qformer_config.use_qformer_text_input = True
    hf, info = Blip2ForImageTextRetrieval.from_pretrained(
        checkpoint, config=config, use_safetensors=True, output_loading_info=True
    )
    missing = set(info["missing_keys"])
    if not had_text or any(".intermediate." in k for k in missing):
        with torch.no_grad():
            for layer in hf.qformer.encoder.layer:
                layer.intermediate.load_state_dict(layer.intermediate_query.state_dict())
                layer.output.load_state_dict(layer.output_query.state_dict())
    if "query_tokens" in missing:
        _init_query_tokens(hf)
    if missing:
        log.warning("%s: %d weights not in the checkpoint start fresh (e.g. %s)", checkpoint, len(missing), sorted(missing)[:3])
    return hf


def _wrap(hf: Blip2ForImageTextRetrieval, cfg: ModelConfig) -> nn.Module:
    kwargs = dict(temperature=cfg.temperature, freeze_vision=cfg.vision_frozen)
    if cfg.kind == "detailfusion":
        kwargs["compositor_heads"] = cfg.compositor_heads
    model = MODELS[cfg.kind](hf, **kwargs)
    model.model_config = cfg
    return model


def create_model(cfg: ModelConfig, tokenizer=None, seed: int = 0) -> nn.Module:
    """Build the configured model: tiny (random init, needs the tokenizer for its vocabulary) or real."""
    if cfg.kind == "clip4cir":
        return _create_clip4cir(cfg, tokenizer, seed)
    if cfg.size == "real":
        return _wrap(load_blip2(cfg.checkpoint), cfg)
    if tokenizer is None:
        raise ValueError("a tiny model needs its tokenizer (for the vocabulary size): pass tokenizer=")
    torch.manual_seed(seed)
    hf = install_stem(Blip2ForImageTextRetrieval(tiny_blip2_config(cfg, len(tokenizer), tokenizer.pad_token_id or 0)))
    _init_query_tokens(hf)
    return _wrap(hf, cfg)


def _create_clip4cir(cfg: ModelConfig, tokenizer, seed: int) -> nn.Module:
    if cfg.size == "real":
        if checkpoint_type(cfg.checkpoint) not in (None, "clip"):
            raise ValueError(f"model.kind='clip4cir' needs a CLIP checkpoint; {cfg.checkpoint} is "
                             f"{checkpoint_type(cfg.checkpoint)!r}")
        return _clip_model(CLIPModel.from_pretrained(cfg.checkpoint, use_safetensors=True), cfg)
    if tokenizer is None:
        raise ValueError("a tiny model needs its tokenizer (for the vocabulary size): pass tokenizer=")
    torch.manual_seed(seed)
    return _clip_model(CLIPModel(tiny_clip_config(cfg, tokenizer)), cfg)


def save_model(model: nn.Module, folder: str | Path, tokenizer=None) -> Path:
    """Weights as safetensors plus the configs that rebuild the model without the original checkpoint."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / MODEL_FILE))
    meta = {"model": model.model_config.model_dump(mode="json")}
    if model.kind == "clip4cir":
        meta["clip_config"] = model.clip_config.to_dict()
    else:
        meta["blip2_config"] = model.blip2_config.to_dict()
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def load_model(folder: str | Path) -> nn.Module:
    """Rebuild a model saved by ``save_model`` (strict: every weight must be there)."""
    folder = Path(folder)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    cfg = ModelConfig.model_validate(meta["model"])
    if "clip_config" in meta:
        model = _clip_model(CLIPModel(CLIPConfig.from_dict(meta["clip_config"])), cfg)
    else:
        model = _wrap(install_stem(Blip2ForImageTextRetrieval(Blip2Config.from_dict(meta["blip2_config"]))), cfg)
    model.load_state_dict(load_file(str(folder / MODEL_FILE)), strict=True)
    if (folder / "tokenizer_config.json").exists():
        model.tokenizer = load_saved_tokenizer(folder)
    return model


def text_length(model: nn.Module, wanted: int) -> int:
    """Token budget: what the config asks, capped by the text encoder's position embeddings."""
    if hasattr(model, "clip_config"):
        return min(wanted, model.clip_config.text_config.max_position_embeddings)
    return min(wanted, model.blip2_config.qformer_config.max_position_embeddings)


def image_size(model: nn.Module) -> int:
    """The model's input side in pixels."""
    config = model.clip_config if hasattr(model, "clip_config") else model.blip2_config
    return config.vision_config.image_size


def load_saved_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved beside a model."""
    return AutoTokenizer.from_pretrained(str(folder))
