"""DetailFusion: a global-matching (GM) and a detail-oriented inference (DI) Q-Former branch over one
frozen vision tower, and an adaptive feature compositor that weighs the two branches per query.

The compositor cross-attends the GM branch's multimodal tokens to the DI branch's, pools, and an MLP
predicts two softmax weights; a target's score is the weighted sum of the two branch scores (each a
max-sim over that branch's target tokens), so the weights act per query and per branch.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from transformers import Blip2ForImageTextRetrieval

from trainers.losses import max_sim, own_max_sim
from trainers.qformer import QFormerBranch, VisionTower

STAGES = ("df_di", "df_joint", "df_compositor")


class AdaptiveCompositor(nn.Module):
    """Cross-attention (GM tokens attend to DI tokens) + MLP -> per-query weights (B,2) for (GM, DI)."""

    def __init__(self, dim: int, heads: int, temperature: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 2))
        # Zero last layer: training starts from an even 0.5/0.5 blend instead of a random tilt.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.log_temp = nn.Parameter(torch.tensor(math.log(temperature)))  # log space, as in QFormerBranch

    @property
    def temp(self) -> torch.Tensor:
        return self.log_temp.exp()

    def forward(
        self, gm_hidden: torch.Tensor, gm_mask: torch.Tensor, di_hidden: torch.Tensor, di_mask: torch.Tensor
    ) -> torch.Tensor:
        attended, _ = self.attn(gm_hidden, di_hidden, di_hidden, key_padding_mask=~di_mask.bool())
        x = self.norm(gm_hidden + attended)
        pooled = torch.cat([_masked_mean(x, gm_mask), _masked_mean(di_hidden, di_mask)], dim=-1)
        return torch.softmax(self.mlp(pooled), dim=-1)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class DetailFusion(nn.Module):
    """Dual-branch CIR model; ``set_stage`` picks what trains in each of the three stages."""

    kind = "detailfusion"

    def __init__(
        self,
        hf: Blip2ForImageTextRetrieval,
        *,
        temperature: float = 0.07,
        freeze_vision: bool = True,
        compositor_heads: int = 2,
    ):
        super().__init__()
        self.blip2_config = hf.config
        self.vision = VisionTower(hf, freeze_vision)
        # Both branches start from the same BLIP-2 Q-Former, as in the paper.
        self.gm = QFormerBranch(hf, temperature)
        self.di = copy.deepcopy(self.gm)
        self.compositor = AdaptiveCompositor(hf.config.qformer_config.hidden_size, compositor_heads, temperature)

    @property
    def temp(self) -> torch.Tensor:
        return self.compositor.temp

    def encode_gallery(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images -> {"gm": (N,Q,E), "di": (N,Q,E)}."""
        feats = self.vision(pixel_values)
        return {"gm": self.gm.image_tokens(feats), "di": self.di.image_tokens(feats)}

    def encode_query(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """(reference, text) -> {"gm": (B,E), "di": (B,E), "weights": (B,2)}."""
        feats = self.vision(pixel_values)
        gm, gm_hidden, gm_mask = self.gm.fuse(feats, input_ids, attention_mask)
        di, di_hidden, di_mask = self.di.fuse(feats, input_ids, attention_mask)
        weights = self.compositor(gm_hidden, gm_mask, di_hidden, di_mask)
        return {"gm": gm, "di": di, "weights": weights}

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text-only feature of the GM branch."""
        return self.gm.text(input_ids, attention_mask)

    def score(self, query: dict[str, torch.Tensor], gallery: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,N) = w_gm * maxsim_gm + w_di * maxsim_di."""
        w = query["weights"]
        return w[:, :1] * max_sim(query["gm"], gallery["gm"]) + w[:, 1:] * max_sim(query["di"], gallery["di"])

    def score_own(self, query: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> torch.Tensor:
        """Row i against only its own K images -> (B,K)."""
        w = query["weights"]
        return w[:, :1] * own_max_sim(query["gm"], own["gm"]) + w[:, 1:] * own_max_sim(query["di"], own["di"])

    def set_stage(self, stage: str) -> None:
        """Stage 1 trains DI; stage 2 trains DI and GM; stage 3 trains only the compositor."""
        if stage not in STAGES:
            raise ValueError(f"DetailFusion stage must be one of {STAGES}, got {stage!r}")
        self.di.requires_grad_(stage in ("df_di", "df_joint"))
        self.gm.requires_grad_(stage == "df_joint")
        self.compositor.requires_grad_(stage == "df_compositor")
