"""The ShapesWorld annotator as a text stage: ground-truth texts, the seed-set writer."""
from __future__ import annotations

import random

from pipeline.seeding import derive_seed
from pipeline.stage import Batch, Stage, missing, to_list

ANNOTATOR_ID = "shapesworld-annotator"


class AnnotatorTextStage(Stage):
    """Writes forward and reverse texts from the scene graphs; rejects pairs it cannot describe."""

    name = "annotator"
    reads = ("triplet_id", "reference_scene", "target_scene")
    writes = ("modification_text", "reverse_text")
    num_cpus = 0.5
    batch_size = 256
    stateful = False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def process(self, batch: Batch) -> Batch:
        from pipeline.shapesworld import Scene, annotate

        fwd, rev = [], []
        tids = to_list(batch["triplet_id"])
        for i, (tid, rs, ts) in enumerate(zip(tids, batch["reference_scene"], batch["target_scene"])):
            if missing(rs) or missing(ts):
                self.reject(batch, i, "no_scene_graph")
                fwd.append("")
                rev.append(None)
                continue
            ref, tgt = Scene.from_json(rs), Scene.from_json(ts)
            f = annotate(ref, tgt, random.Random(derive_seed(self.seed, "fwd", tid)))
            r = annotate(tgt, ref, random.Random(derive_seed(self.seed, "rev", tid)))
            if f is None or r is None:
                self.reject(batch, i, "more_than_2_edits")
            fwd.append(f or "")
            rev.append(r)
        batch["modification_text"] = fwd
        batch["reverse_text"] = rev
        return batch
