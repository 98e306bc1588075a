"""Retrieval training on cirforge triplets: models (qformer, detailfusion, factory), losses, data,
objectives, loop (pretrain / finetune), metrics, evaluate and focus (FBCIR diagnosis); reproduce (the
reproduction table: config, sets, runs, table); steps (train, benchmark and judge steps of the train
and nightly flows), nightly (their config and glue) and registry (model versions and the promotion
rule). The ShapesWorld sets they train and judge on are built in pipeline/shapesworld/sets/."""
