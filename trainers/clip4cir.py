"""CLIP4Cir (Baldrati et al.): CLIP image and text features fused by the Combiner, from a CLIP checkpoint.

The Combiner follows the authors' ``combiner.py``: both features projected (ReLU, dropout 0.5),
concatenated, mixed by a hidden layer, plus a learned convex mix ``lambda * text + (1 - lambda) *
image``; the output is normalized. Targets are normalized CLIP image features; scores are dot
products. Their stage 1 (``c4c_sum``: the query is ``normalize(image + text)``, CLIP trains) and
stage 2 (``c4c_combiner``: CLIP frozen) are stages here; ``q2t`` / ``ptha`` train the Combiner and
the text tower. Tiny and real sizes share this code: both come from a ``transformers.CLIPModel``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel


class Combiner(nn.Module):
    """Image and text features (B,D) -> the normalized composed feature (B,D)."""

    def __init__(self, dim: int, projection: int, hidden: int, dropout: float = 0.5):
        super().__init__()
        self.text_projection_layer = nn.Linear(dim, projection)
        self.image_projection_layer = nn.Linear(dim, projection)
        self.combiner_layer = nn.Linear(2 * projection, hidden)
        self.output_layer = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        self.dynamic_scalar = nn.Sequential(nn.Linear(2 * projection, hidden), nn.ReLU(), nn.Dropout(dropout),
                                            nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        text_p = self.dropout(F.relu(self.text_projection_layer(text)))
        image_p = self.dropout(F.relu(self.image_projection_layer(image)))
        raw = torch.cat([text_p, image_p], dim=-1)
        mixed = self.dropout(F.relu(self.combiner_layer(raw)))
        lam = self.dynamic_scalar(raw)
        return F.normalize(self.output_layer(mixed) + lam * text + (1 - lam) * image, dim=-1)


class Clip4Cir(nn.Module):
    """CLIP towers + Combiner; the same interface as QFormerCIR (encode_gallery/query/text, score)."""

    kind = "clip4cir"

    def __init__(self, clip: CLIPModel, *, temperature: float = 0.01, freeze_vision: bool = True,
                 projection: int | None = None, hidden: int | None = None):
        super().__init__()
        self.clip_config = clip.config
        self.clip = clip
        dim = clip.config.projection_dim
        self.combiner = Combiner(dim, projection or 4 * dim, hidden or 8 * dim)
        # CLIP4Cir scales logits by a fixed 100 (tau 0.01): the temperature is kept, not learned.
        self.log_temp = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=False)
        # Saved with the weights: a model trained only by stage 1 queries with the plain sum.
        self.register_buffer("sum_only", torch.tensor(False))
        self.freeze_vision = freeze_vision

    @property
    def temp(self) -> torch.Tensor:
        return self.log_temp.exp()

    def _image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vision = self.clip.vision_model
        if not any(p.requires_grad for p in vision.parameters()):
            vision.eval()  # frozen: no dropout, no autograd
            with torch.no_grad():
                return self.clip.visual_projection(vision(pixel_values=pixel_values).pooler_output)
        return self.clip.visual_projection(vision(pixel_values=pixel_values).pooler_output)

    def _text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.clip.text_projection(out.pooler_output)

    def encode_gallery(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (N,3,H,W) -> {"feat": (N,D)} normalized."""
        return {"feat": F.normalize(self._image(pixel_values), dim=-1)}

    def encode_query(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """(reference images, token ids) -> {"fused": (B,D)}."""
        image, text = self._image(pixel_values), self._text(input_ids, attention_mask)
        if bool(self.sum_only):
            return {"fused": F.normalize(image + text, dim=-1)}
        return {"fused": self.combiner(image, text)}

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text-only feature (B,D), normalized."""
        return F.normalize(self._text(input_ids, attention_mask), dim=-1)

    def score(self, query: dict[str, torch.Tensor], gallery: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B queries) x (N images) -> (B,N) cosine similarities."""
        return query["fused"] @ gallery["feat"].T

    def score_own(self, query: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> torch.Tensor:
        """Row i against only its own K images ((B,K,D)) -> (B,K)."""
        return torch.einsum("bd,bkd->bk", query["fused"], own["feat"])

    def set_stage(self, stage: str) -> None:
        """c4c_sum: CLIP trains, the plain sum queries; c4c_combiner: only the Combiner trains;
        q2t / ptha: the Combiner and the text tower train. The vision tower trains only when not frozen."""
        self.sum_only.fill_(stage == "c4c_sum")
        self.combiner.requires_grad_(stage != "c4c_sum")
        self.clip.requires_grad_(stage != "c4c_combiner")
        if self.freeze_vision or stage == "c4c_combiner":
            self.clip.vision_model.requires_grad_(False)
            self.clip.visual_projection.requires_grad_(False)
        self.clip.logit_scale.requires_grad_(False)  # CLIP's own scale is unused here
