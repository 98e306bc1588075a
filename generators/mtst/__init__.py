"""The MTST family: the two-image text generator (model, tokenizer, seed data, training, evaluation, decoding, text stage)."""
