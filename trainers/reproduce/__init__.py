"""The reproduction table on ShapesWorld, from one command: ``python -m trainers.reproduce``.

Rows (each adds to the one above, DetailFusion takes everything):

1. seed set only          - finetune on the annotated seed set (L_q2t + L_t2t), from scratch;
2. + synthetic pretraining - first pretrain on pipeline-generated shards (``pipeline.job.generate``);
3. + PTHA reverse         - L_p2p with the reverse text, in both phases;
4. + FBCIR negatives      - each row's two FBCIR negatives in the contrastive denominator;
5. DetailFusion           - the dual-branch model, its 3 stages (DI; DI+GM; compositor), the
                            reference as a hard negative, plus the FBCIR negatives.

Columns: R@1, R@5 (reference removed from the gallery), Rs@1 (the reference's group), hard-case R@1
(target vs its 2 FBCIR negatives and the reference) and the focus imbalance index, as mean ± std over
the training seeds, on a ShapesWorld benchmark drawn from its own seed that shares no image with the
seed set or the synthetic shards (checked by image id and by image bytes).

Everything is cached under ``out_dir`` by config hash (the synthetic dataset, the seed set, the
benchmark, each trained phase and each evaluation): a rerun of the same config only reads.

The parts: config.py (``ReproduceConfig``, the rows, the cache key), sets.py (the synthetic shards,
seed set and benchmark), run.py (the trainings and evaluations, ``reproduce``), table.py (summary,
markdown table, doc block), cli.py (``main``, the command line).
"""
from trainers.reproduce.cli import main
from trainers.reproduce.config import ROWS, ReproduceConfig, load_reproduce_config
from trainers.reproduce.run import reproduce

__all__ = ["ROWS", "ReproduceConfig", "load_reproduce_config", "main", "reproduce"]
