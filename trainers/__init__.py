"""Retrieval training on cirforge triplets: models (qformer, detailfusion, factory), losses, data,
objectives, loop (pretrain / finetune), metrics, evaluate and focus (FBCIR diagnosis)."""
