"""Training configuration: pydantic sections, defaults here and nowhere else.

``TrainConfig`` is what ``pretrain`` / ``finetune`` take; ``EvalConfig`` what ``evaluate`` takes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config_base import Section


class TinyConfig(Section):
    """Sizes of the tiny BLIP-2 (vision tower + Q-Former) built from a config, random init."""

    vision_hidden: int = 32
    vision_layers: int = 1
    patch_size: int = 16
    qformer_hidden: int = 32
    # >= 2: in a Q-Former layer the text attends to the queries before they cross-attend to the image,
    # so with one layer the fused (reference, text) feature would never see the reference.
    qformer_layers: int = Field(2, ge=2)
    heads: int = 2
    num_query_tokens: int = 4
    embed_dim: int = Field(16, description="projection size the scores are computed in")
    max_text_len: int = 32
    # BERT's 0.02 suits wide layers; at 16-32 wide it leaves every image's query tokens nearly equal.
    init_std: float = Field(0.1, gt=0, description="weight init std of the random vision tower and Q-Former")
    dropout: float = Field(0.0, ge=0, lt=1, description="Q-Former / vision dropout (noise swamps a 16-wide model)")
    conv_stem: int = Field(
        0, ge=0, description="tiny only: channels of a 2-layer conv stem (stride 2, 2) pooled to the patch grid "
                             "in place of the linear patch embedding; 0: BLIP-2's linear patches"
    )
    region_scores: bool = Field(
        False, description="score by all query tokens at once: an image is its Q projected tokens concatenated, a "
                           "query the Q query outputs of the fused pass (each region read with the text); "
                           "False: SPRC's text [CLS] against the best-matching target token"
    )
    query_grid: int | None = Field(
        None, ge=1, description="region queries (as the MTST generator's): g x g queries, query i reads only the "
                                "patches of grid region i (plus CLS); needs num_query_tokens = g * g. None: all patches"
    )


# The tiny model that learns ShapesWorld (docs/reproduction.md, "what was tried"): one 21 px patch per
# grid cell (a 64 px input drops its last pixel row and column), a conv stem in place of the linear patch
# embedding, 9 region queries (query i reads cell i) and region scores (an image is its 9 projected query
# tokens side by side; SPRC's single [CLS]-vs-best-token score left R@1 at 1-2 %). The reproduction table
# and the nightly retrain use it; ``TinyConfig()`` keeps the first tiny model.
SHAPESWORLD_TINY = TinyConfig(patch_size=21, vision_hidden=64, vision_layers=2, qformer_hidden=64, heads=4,
                              num_query_tokens=9, embed_dim=32, query_grid=3, conv_stem=32, region_scores=True,
                              max_text_len=48)


class ModelConfig(Section):
    """Which retrieval model and at which size."""

    kind: Literal["qformer_cir", "detailfusion", "clip4cir"] = Field(
        "qformer_cir", description="qformer_cir: SPRC/PTHA Q-Former model; detailfusion: GM + DI branches + compositor; "
                                   "clip4cir: CLIP + Combiner (CLIP4Cir)"
    )
    size: Literal["tiny", "real"] = "tiny"
    checkpoint: str | None = Field(
        None, description="real: BLIP-2 checkpoint id or path (Blip2ForImageTextRetrieval or Blip2Model layout); "
                          "clip4cir: a CLIPModel checkpoint"
    )
    tokenizer: str | None = Field(None, description="real: tokenizer id or path (BERT); default: the checkpoint's")
    image_size: int = Field(64, ge=16, description="input side in pixels (224 for real BLIP-2)")
    freeze_vision: bool | None = Field(
        None, description="freeze the vision tower; default: frozen for real (as SPRC/PTHA/DetailFusion), trained for tiny"
    )
    temperature: float = Field(0.07, gt=0, description="initial contrastive temperature (learnable)")
    compositor_heads: int = Field(2, ge=1, description="DetailFusion compositor cross-attention heads")
    combiner_projection: int | None = Field(None, ge=1, description="clip4cir: Combiner projection width (default 4 x CLIP dim)")
    combiner_hidden: int | None = Field(None, ge=1, description="clip4cir: Combiner hidden width (default 8 x CLIP dim)")
    tiny: TinyConfig = TinyConfig()

    @model_validator(mode="after")
    def _real_needs_checkpoint(self):
        if self.size == "real" and not self.checkpoint:
            raise ValueError("model.size='real' needs model.checkpoint (e.g. 'Salesforce/blip2-itm-vit-g' or a path)")
        return self

    @property
    def vision_frozen(self) -> bool:
        # A random tiny tower has nothing worth freezing; a pretrained ViT-G is frozen in all three papers.
        return self.size == "real" if self.freeze_vision is None else self.freeze_vision


class LossConfig(Section):
    """Loss weights. PTHA: q2t + t2t + alpha * p2p; DetailFusion stage 2: DI + gamma * GM."""

    q2t: float = Field(1.0, ge=0, description="query -> target contrastive weight")
    t2t: float = Field(1.0, ge=0, description="text term weight (0 turns it off)")
    t2t_mode: Literal["text_to_target", "text_to_text"] = Field(
        "text_to_target", description="text feature vs target image tokens, or fused query vs text feature"
    )
    p2p: float = Field(0.5, ge=0, description="alpha: MSE(forward prototype, detached reverse prototype)")
    fbcir: bool = Field(True, description="append the row's two FBCIR negatives to its contrastive denominator")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    gamma: float = Field(1.0, ge=0, description="DetailFusion stage 2: L_DI + gamma * L_GM (paper: 2.0 on CIRR)")
    min_temperature: float = Field(0.001, gt=0, description="the learnable temperature is clamped to [min, max]")
    max_temperature: float = Field(0.5, gt=0)


class DataConfig(Section):
    """How triplet rows are read and batched."""

    split: str = "train"
    batch_size: int = Field(8, ge=1)
    shuffle: bool = Field(True, description="shuffle row groups and rows within a buffer, seeded per epoch")
    shuffle_buffer: int = Field(256, ge=1, description="rows held for shuffling (never the whole dataset)")
    max_text_len: int = Field(32, ge=4)
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes decoding images (0: in the loop)")


class OptimConfig(Section):
    """AdamW and the schedule length."""

    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    max_steps: int = Field(100, ge=1, description="optimizer steps in this phase")
    grad_clip: float | None = Field(1.0, description="max grad norm; None turns clipping off")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step (global batch = batch_size x "
                                                 "grad_accum x processes)")
    schedule: Literal["constant", "cosine"] = Field("constant", description="learning rate after warmup")
    warmup_steps: int = Field(0, ge=0, description="linear warmup from 0 to lr over these optimizer steps")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine: the lr it decays to, as a share of lr")


class TrainConfig(Section):
    """One training phase (pretrain or finetune, or one DetailFusion stage)."""

    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    stage: Literal["ptha", "q2t", "df_di", "df_joint", "df_compositor", "c4c_sum", "c4c_combiner"] = Field(
        "ptha",
        description="objective: ptha (q2t+t2t+p2p), q2t only (pretrain), a DetailFusion stage 1/2/3, or a "
                    "CLIP4Cir stage 1/2",
    )
    out_dir: Path = Path("out/train")
    init_from: Path | None = Field(None, description="a saved model folder to start from (e.g. the pretrain output)")
    seed: int = 0
    checkpoint_every: int = Field(50, ge=1, description="steps between checkpoints (and always at the end)")
    resume: bool = Field(True, description="continue from the last checkpoint in out_dir when there is one")
    progress: bool = Field(True, description="show a progress bar")
    device: str = Field("auto", description="'auto' (cuda when there is one), 'cpu', 'cuda', 'cuda:1', ...")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast matmuls on GPU (real size)")
    num_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads; None keeps torch's default (1 is fastest for tiny models)"
    )
    find_unused_parameters: bool = Field(
        False, description="DDP: look for weights a step did not use (slower; only for a stage that skips some)"
    )

    @model_validator(mode="after")
    def _stage_matches_model(self):
        for prefix, kind in (("df_", "detailfusion"), ("c4c_", "clip4cir")):
            if self.stage.startswith(prefix) and self.model.kind != kind:
                raise ValueError(f"stage={self.stage!r} needs model.kind={kind!r}, got {self.model.kind!r}")
        return self


class EvalConfig(Section):
    """Evaluation: which cut-offs and how many images per forward pass."""

    ks: tuple[int, ...] = (1, 5, 10, 50)
    subset_ks: tuple[int, ...] = (1, 2, 3)
    map_ks: tuple[int, ...] = (5, 10, 25, 50)
    batch_size: int = Field(32, ge=1)
    max_text_len: int = Field(32, ge=4)
    split: str = Field("test", description="the split evaluate() reads when given a dataset folder")
    exclude_reference: bool = Field(True, description="drop the reference from its own gallery (CIRR, CIRCO)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes decoding images")
