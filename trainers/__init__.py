"""Retrieval training on cirforge triplets: models (qformer, detailfusion, factory), losses, data,
objectives, loop (pretrain / finetune), metrics, evaluate and focus (FBCIR diagnosis); shapesworld_sets
(seed set and held-out benchmarks with exact negatives), reproduce (the reproduction table),
registry and nightly (model versions and the promotion rule the nightly flow applies)."""
