"""One training run of the tiny model on tinyworld rows, for the multi-process test: ``python
tests/trainers/ddp_run.py OUT GRAD_ACCUM [WORKERS]`` (under ``accelerate launch`` or alone)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.trainers.tinyworld import SIZE, make_rows  # noqa: E402
from trainers.config import ModelConfig, TinyConfig, TrainConfig  # noqa: E402
from trainers.loop import finetune  # noqa: E402


def main(out: str, accum: int, workers: int = 0) -> None:
    model = ModelConfig(image_size=SIZE, tiny=TinyConfig(vision_hidden=16, qformer_hidden=16, qformer_layers=2,
                                                         num_query_tokens=2, embed_dim=8, max_text_len=16))
    cfg = TrainConfig(model=model, out_dir=Path(out), progress=False, num_threads=1, device="cpu",
                      checkpoint_every=2, data={"batch_size": 4, "max_text_len": 16, "num_workers": workers},
                      optim={"lr": 3e-3, "max_steps": 4, "weight_decay": 0.0, "grad_accum": accum,
                             "warmup_steps": 1, "schedule": "cosine"})
    finetune(make_rows(16), cfg)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
