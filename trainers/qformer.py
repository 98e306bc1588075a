"""The SPRC/PTHA Q-Former CIR model on BLIP-2 parts (vision tower + Q-Former with its text path).

Images become Q normalized query tokens; a (reference, text) query becomes one fused feature: the
Q-Former's text [CLS] output while the query tokens attend to the reference. A target is scored by
the max similarity over its query tokens. Tiny and real sizes share this code: both come from a
``transformers.Blip2ForImageTextRetrieval`` (random from a config, or ``from_pretrained``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Blip2ForImageTextRetrieval

from trainers.losses import max_sim, own_max_sim


class QFormerBranch(nn.Module):
    """Query tokens, Q-Former (query and text paths), projections and a learnable temperature."""

    def __init__(self, hf: Blip2ForImageTextRetrieval, temperature: float):
        super().__init__()
        self.query_tokens = hf.query_tokens
        self.embeddings = hf.embeddings
        self.qformer = hf.qformer
        self.vision_projection = hf.vision_projection
        self.text_projection = hf.text_projection
        # Learned in log space (CLIP's logit_scale): an Adam step then changes tau by a ratio, not by
        # an absolute amount that would drive 0.07 to the clamp in a few dozen high-lr steps.
        self.log_temp = nn.Parameter(torch.tensor(math.log(temperature)))
        # Region queries (tiny models; ``query_grid`` saved in the BLIP-2 config): not a weight, so a
        # checkpoint without it loads unchanged and reads every patch.
        grid = getattr(hf.config, "query_grid", None)
        self.register_buffer("windows", region_bias(hf.config, grid), persistent=False)
        # Region scores: a whole scene is compared region by region, not by its single best token.
        self.regions = bool(getattr(hf.config, "region_scores", False))

    def _image_mask(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Every patch (B,P) ones, or the region queries' additive (B,1,Q,P) mask."""
        if self.windows is None:
            return _ones(image_embeds)
        return self.windows.to(image_embeds.dtype)[None, None].expand(image_embeds.shape[0], 1, -1, -1)

    @property
    def temp(self) -> torch.Tensor:
        return self.log_temp.exp()

    @property
    def num_query_tokens(self) -> int:
        return self.query_tokens.shape[1]

    def image_tokens(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Vision features (B,P,Dv) -> normalized query tokens (B,Q,E)."""
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        out = self.qformer(
            query_embeds=queries,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=self._image_mask(image_embeds),
        ).last_hidden_state
        if self.regions:  # (B,1,Q*E): one token, the regions' projections side by side
            return F.normalize(self.vision_projection(out).flatten(1), dim=-1).unsqueeze(1)
        return F.normalize(self.vision_projection(out), dim=-1)

    def fuse(
        self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reference features, text) -> fused feature (B,E), Q-Former hidden states (B,Q+L,D), their mask."""
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        mask = torch.cat([torch.ones(queries.shape[:2], dtype=attention_mask.dtype, device=queries.device), attention_mask], 1)
        embeds = self.embeddings(input_ids=input_ids, query_embeds=queries)
        hidden = self.qformer(
            query_embeds=embeds,
            query_length=queries.shape[1],
            attention_mask=mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=self._image_mask(image_embeds),
        ).last_hidden_state
        if self.regions:  # each region query has read its cell of the reference and the whole text
            fused = F.normalize(self.vision_projection(hidden[:, : queries.shape[1]]).flatten(1), dim=-1)
            return fused, hidden, mask
        # The text [CLS] sits right after the query tokens (SPRC / LAVIS blip2_cir).
        fused = F.normalize(self.text_projection(hidden[:, queries.shape[1], :]), dim=-1)
        return fused, hidden, mask

    def text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text-only pass (the Q-Former as a BERT text encoder) -> normalized [CLS] feature (B,E)."""
        hidden = self.qformer(
            query_embeds=self.embeddings(input_ids=input_ids), query_length=0, attention_mask=attention_mask
        ).last_hidden_state
        text = self.text_projection(hidden[:, 0, :])
        if self.regions:  # the same text feature for every region: scored against the regions' sum
            text = text.repeat(1, self.num_query_tokens)
        return F.normalize(text, dim=-1)


def _ones(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape[:2], dtype=torch.long, device=x.device)


def region_bias(config, grid: int | None) -> torch.Tensor | None:
    """Additive (Q, 1 + patches) cross-attention bias of region queries, or None (every query reads all).

    The MTST generator's finding (docs/mtst.md): queries that read every patch pool a ShapesWorld scene
    and blur which cell holds what; with g x g queries each reading its own region (plus CLS), query i
    is region i. The windows are the generator's own (``generators.mtst.model.query_windows``).
    """
    if grid is None:
        return None
    from generators.mtst.model import query_windows

    allowed = query_windows(config, grid)
    return torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)


class VisionTower(nn.Module):
    """The BLIP-2 vision encoder; frozen by default, and then run without autograd."""

    def __init__(self, hf: Blip2ForImageTextRetrieval, frozen: bool):
        super().__init__()
        self.model = hf.vision_model
        self.frozen = frozen
        if frozen:
            self.model.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            self.model.eval()  # no dropout in a frozen tower, whatever mode the parent is in
            with torch.no_grad():
                return self.model(pixel_values=pixel_values).last_hidden_state
        return self.model(pixel_values=pixel_values).last_hidden_state


class QFormerCIR(nn.Module):
    """SPRC/PTHA composed retrieval model: one Q-Former branch over a (frozen) vision tower."""

    kind = "qformer_cir"

    def __init__(self, hf: Blip2ForImageTextRetrieval, *, temperature: float = 0.07, freeze_vision: bool = True):
        super().__init__()
        self.blip2_config = hf.config
        self.vision = VisionTower(hf, freeze_vision)
        self.branch = QFormerBranch(hf, temperature)

    @property
    def temp(self) -> torch.Tensor:
        return self.branch.temp

    def encode_gallery(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (N,3,H,W) -> {"tokens": (N,Q,E)}."""
        return {"tokens": self.branch.image_tokens(self.vision(pixel_values))}

    def encode_query(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """(reference images, token ids) -> {"fused": (B,E)}."""
        fused, _, _ = self.branch.fuse(self.vision(pixel_values), input_ids, attention_mask)
        return {"fused": fused}

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text-only feature (B,E), for the text-to-text / text-to-target term."""
        return self.branch.text(input_ids, attention_mask)

    def score(self, query: dict[str, torch.Tensor], gallery: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B queries) x (N images) -> (B,N) by max similarity over each image's query tokens."""
        return max_sim(query["fused"], gallery["tokens"])

    def score_own(self, query: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> torch.Tensor:
        """Row i against only its own K images (values shaped (B,K,...)) -> (B,K)."""
        return own_max_sim(query["fused"], own["tokens"])

    def set_stage(self, stage: str) -> None:
        """Everything but a frozen vision tower trains in every QFormerCIR stage."""
        self.branch.requires_grad_(True)
