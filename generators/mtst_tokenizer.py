"""A word-level tokenizer over a closed corpus (ShapesWorld texts), built with ``tokenizers``."""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}


def build_word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """Whitespace-split WordLevel vocabulary of ``texts`` plus pad/unk/bos/eos (ids 0-3)."""
    words = sorted({w for t in texts for w in t.split()})
    vocab = {tok: i for i, tok in enumerate(SPECIALS.values())}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    # Whitespace split only, so punctuation stays on its word and decoding restores the text exactly.
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)
    return fast
