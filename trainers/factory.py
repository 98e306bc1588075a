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
from transformers import AutoTokenizer, Blip2Config, Blip2ForImageTextRetrieval, PreTrainedTokenizerFast

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
    return Blip2Config(
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


def _init_query_tokens(hf: Blip2ForImageTextRetrieval) -> None:
    # transformers inits query tokens to zeros: identical tokens would stay identical forever under
    # max-sim, so start them as LAVIS does (normal, std = initializer_range).
    with torch.no_grad():
        hf.query_tokens.normal_(0.0, hf.config.qformer_config.initializer_range)


def load_blip2(checkpoint: str | Path) -> Blip2ForImageTextRetrieval:
    """BLIP-2 vision tower + Q-Former from a checkpoint (safetensors), with the Q-Former text path on.

    A ``Blip2ForImageTextRetrieval`` checkpoint loads whole. A ``Blip2Model`` / generation checkpoint
    (e.g. blip2-opt-2.7b) has no text path: its text feed-forward starts as a copy of the query one,
    and word embeddings and projections start random.
    """
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
    if cfg.size == "real":
        return _wrap(load_blip2(cfg.checkpoint), cfg)
    if tokenizer is None:
        raise ValueError("a tiny model needs its tokenizer (for the vocabulary size): pass tokenizer=")
    torch.manual_seed(seed)
    hf = Blip2ForImageTextRetrieval(tiny_blip2_config(cfg, len(tokenizer), tokenizer.pad_token_id or 0))
    _init_query_tokens(hf)
    return _wrap(hf, cfg)


def save_model(model: nn.Module, folder: str | Path, tokenizer=None) -> Path:
    """Weights as safetensors plus the configs that rebuild the model without the original checkpoint."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / MODEL_FILE))
    meta = {"model": model.model_config.model_dump(mode="json"), "blip2_config": model.blip2_config.to_dict()}
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def load_model(folder: str | Path) -> nn.Module:
    """Rebuild a model saved by ``save_model`` (strict: every weight must be there)."""
    folder = Path(folder)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    cfg = ModelConfig.model_validate(meta["model"])
    hf = Blip2ForImageTextRetrieval(Blip2Config.from_dict(meta["blip2_config"]))
    model = _wrap(hf, cfg)
    model.load_state_dict(load_file(str(folder / MODEL_FILE)), strict=True)
    if (folder / "tokenizer_config.json").exists():
        model.tokenizer = load_saved_tokenizer(folder)
    return model


def text_length(model: nn.Module, wanted: int) -> int:
    """Token budget: what the config asks, capped by the Q-Former's position embeddings."""
    return min(wanted, model.blip2_config.qformer_config.max_position_embeddings)


def load_saved_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved beside a model."""
    return AutoTokenizer.from_pretrained(str(folder))
