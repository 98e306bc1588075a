"""The FBCIR hard-negative stage: per triplet a text-aligned and an image-aligned negative.

Reads the texts and images (and scene graphs for ShapesWorld); mines each negative from the pool
file first, asks the editor (one batched call per stage batch) for those no pool image fits, then
verifies every negative: ShapesWorld exactly by scene graph, photos by CLIP margins. A row whose
negative cannot be found or verified is rejected with the reason. Rows already rejected upstream
are passed through untouched (no edits spent on them).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from generators.negatives import photo as photo
from generators.negatives import shapesworld as sw
from generators.negatives.editors import EditRequest, Editor, ShapesWorldEditor
from generators.negatives.config import NegativesConfig
from generators.negatives.pool import CandidatePool, write_pool
from pipeline.runtime import StageSpec
from pipeline.seeding import derive_seed
from pipeline.shapesworld.scene import scenes_of
from pipeline.stage import Batch, Stage, is_kept, to_list

KINDS = ("text_aligned", "image_aligned")
# Working columns (not in the shard contract): what the exact check and the tests look at.
SCENE_COLUMNS = ("neg_text_aligned_scene", "neg_text_aligned_source_scene", "neg_image_aligned_scene")
ID_COLUMNS = ("neg_text_aligned_id", "neg_image_aligned_id")


class NegativesStage(Stage):
    """Writes neg_{kind}_image/_source/_instruction, editor, scores.neg_{kind}_margin (+ working columns)."""

    name = "negatives"
    reads = ("triplet_id", "reference_id", "target_id", "reference_image", "target_image", "modification_text",
             "reference_scene", "target_scene")
    optional_reads = ("scores",)
    writes = tuple(f"neg_{k}_{c}" for k in KINDS for c in ("image", "source", "instruction")) + (
        "editor", "scores") + SCENE_COLUMNS + ID_COLUMNS
    batch_size = 64

    def __init__(self, pool_path: str | Path, seed: int = 0, config: dict | None = None, embedder: Any = None,
                 editor: Any = None):
        from filters.embed_columns import load_embedder

        self.cfg = NegativesConfig.model_validate(config or {})
        self.seed = seed
        self.pool = CandidatePool.load(pool_path)
        self.editor = editor if editor is not None else make_editor(
            self.cfg.editor, self.cfg.instruct_pix2pix.model_dump(mode="json"))
        self.embedder = load_embedder(embedder)
        self.side_emb = None
        if self.embedder is not None:
            if self.pool.embeddings is None and len(self.pool):
                self.pool.embeddings = photo.normalize(self._embed_images(self.pool.images))
            self.side_emb = photo.normalize(self.embedder.embed_texts(list(self.cfg.side_edits)))

    def _embed_images(self, structs: list[dict]) -> np.ndarray:
        from filters.embed_columns import decode

        return np.asarray(self.embedder.embed_images([decode(s) for s in structs]), np.float32)

    # -- 1. plan every negative: mined, or an edit request -----------------------------------
    def process(self, batch: Batch) -> Batch:
        n = len(batch["triplet_id"])
        rows = [{k: to_list(batch[k])[i] for k in self.reads} for i in range(n)]
        live = [i for i in range(n) if is_kept(batch, i)]
        found: dict[tuple[int, str], dict] = {}
        requests: list[tuple[int, str, EditRequest]] = []
        photo_rows = [i for i in live if scenes_of(rows[i]) is None]
        anchors = self._anchors(rows, photo_rows)
        for i in live:
            r = rows[i]
            rng = random.Random(derive_seed(self.seed, "negatives", r["triplet_id"]))
            plans = self._plan_scene(r, rng) if i not in anchors else self._plan_photo(r, anchors.get(i), rng)
            for kind, plan in plans.items():
                if plan is None:
                    continue
                if "request" in plan:
                    req = plan["request"]
                    requests.append((i, kind, EditRequest(req["instruction"], req["image"], req.get("scene"),
                                                          derive_seed(self.seed, "neg-edit", kind, r["triplet_id"]))))
                found[(i, kind)] = plan

        # -- 2. one batched editor call for everything no pool image fits --------------------
        if requests:
            results = self.editor.edit_batch([q for _, _, q in requests])
            for (i, kind, q), res in zip(requests, results):
                plan = found[(i, kind)]
                if res is None:
                    plan["why"] = "edit_failed"
                    continue
                plan.update(image=res.image, scene=res.scene, source="edited", instruction=q.instruction)

        # -- 3. verify each negative and write the columns -----------------------------------
        self._verify_photos(found, anchors)
        out = {c: [None] * n for c in self.writes if c != "scores"}
        scores = [dict(s or {}) for s in to_list(batch.get("scores", [None] * n))]
        for i in live:
            edited = False
            for kind in KINDS:
                plan = found.get((i, kind))
                if plan is None:
                    why = "not_found"
                elif plan.get("why") or "image" not in plan:
                    why = plan.get("why") or "edit_failed"
                else:
                    why = self._verify_scene(rows[i], kind, plan)
                if why is not None:
                    if plan is not None:
                        scores[i][f"neg_{kind}_margin"] = plan.get("margin", 0.0)
                    if self.cfg.reject_missing:
                        self.reject(batch, i, f"{kind}_{why}")
                    continue
                scores[i][f"neg_{kind}_margin"] = plan.get("margin", 1.0)
                out[f"neg_{kind}_image"][i] = plan["image"]
                out[f"neg_{kind}_source"][i] = plan["source"]
                out[f"neg_{kind}_instruction"][i] = plan.get("instruction") if plan["source"] == "edited" else None
                out[f"neg_{kind}_id"][i] = plan.get("id")
                out[f"neg_{kind}_scene"][i] = plan.get("scene")
                if kind == "text_aligned":
                    out["neg_text_aligned_source_scene"][i] = plan.get("source_scene")
                edited |= plan["source"] == "edited"
            out["editor"][i] = self.editor.editor_id if edited and self.editor is not None else None
        batch.update(out)
        batch["scores"] = scores
        return batch

    # -- ShapesWorld: plan by scene graph, verify exactly --------------------------------------
    def _plan_scene(self, r: dict, rng: random.Random) -> dict:
        scenes = scenes_of(r)
        if scenes is None:
            return {}
        ref, tgt = scenes
        p = self.pool
        skip = {p.id_index.get(r["reference_id"]), p.id_index.get(r["target_id"])}
        near = p.embeddings[p.id_index[r["target_id"]]] if p.embeddings is not None and r["target_id"] in p.id_index else None
        cands = p.candidates(rng, self.cfg.max_candidates, near=near, exclude=skip)
        label = p.labels[p.id_index[r["reference_id"]]] if r["reference_id"] in p.id_index else None
        requested = sw.requested_change(ref, tgt)
        ta = sw.plan_text_aligned(r["modification_text"] or "", ref, tgt, p, cands, label, self.cfg.prefer_mined, rng)
        # Same family first for the image-aligned one: its members are one or two edits apart.
        fam = sorted(cands, key=lambda j: label is None or p.labels[j] != label)
        ia = sw.plan_image_aligned(ref, tgt, p, fam, requested, rng, self.cfg.max_image_aligned_edits,
                                   self.cfg.prefer_mined)
        out = {}
        for kind, plan in (("text_aligned", ta), ("image_aligned", ia)):
            if plan is None:
                out[kind] = None
            elif plan.pool_index is not None:
                out[kind] = {"image": p.images[plan.pool_index], "scene": plan.scene.to_json(), "source": "mined",
                             "id": p.ids[plan.pool_index],
                             "source_scene": plan.source.to_json() if plan.source else None}
            elif self.editor is None:
                out[kind] = None
            else:
                src_img = p.images[plan.source_index] if plan.source_index is not None else r["reference_image"]
                out[kind] = {"request": {"instruction": plan.instruction, "image": src_img,
                                         "scene": plan.source.to_json()},
                             "source_scene": plan.source.to_json()}
        return out

    def _verify_scene(self, r: dict, kind: str, plan: dict) -> str | None:
        from pipeline.shapesworld import Scene

        scenes = scenes_of(r)
        if scenes is None:
            return None  # photos are verified in _verify_photos
        ref, tgt = scenes
        neg = Scene.from_json(plan["scene"]) if plan.get("scene") else None
        if kind == "text_aligned":
            src = Scene.from_json(plan["source_scene"]) if plan.get("source_scene") else None
            return sw.check_text_aligned(r["modification_text"] or "", src, neg, ref, tgt)
        return sw.check_image_aligned(neg, ref, tgt, max_edits=self.cfg.max_image_aligned_edits)

    # -- photos: plan and verify by CLIP margins -----------------------------------------------
    def _anchors(self, rows: list[dict], idx: list[int]) -> dict[int, photo.Anchors | None]:
        if not idx:
            return {}
        if self.embedder is None or self.pool.embeddings is None:
            return {i: None for i in idx}
        texts = photo.normalize(self.embedder.embed_texts([rows[i]["modification_text"] or "" for i in idx]))
        out = {}
        for k, i in enumerate(idx):
            ref, tgt = (self._image_emb(rows[i][f"{w}_id"], rows[i][f"{w}_image"]) for w in ("reference", "target"))
            out[i] = photo.Anchors(ref, tgt, texts[k])
        return out

    def _image_emb(self, image_id: str, image: dict) -> np.ndarray:
        j = self.pool.id_index.get(image_id)
        return self.pool.embeddings[j] if j is not None else photo.normalize(self._embed_images([image])[0])

    def _plan_photo(self, r: dict, a: photo.Anchors | None, rng: random.Random) -> dict:
        if a is None:
            return {"text_aligned": None, "image_aligned": None}
        c, p = self.cfg, self.pool
        skip = {p.id_index.get(r["reference_id"]), p.id_index.get(r["target_id"])}
        cands = p.candidates(rng, c.max_candidates, near=a.ref, exclude=skip)
        out = {}
        mined = photo.mine_text_aligned(p.embeddings, cands, a, c.text_margin, photo.Cuts.of(c)) \
            if c.prefer_mined else None
        src = photo.pick_edit_source(p.embeddings, cands, a, rng) if mined is None and self.editor else None
        out["text_aligned"] = self._photo_plan(mined, r["modification_text"], None if src is None else p.images[src])
        mined = photo.mine_image_aligned(p.embeddings, cands, a, c.image_margin, c.min_reference_similarity,
                                         photo.Cuts.of(c)) if c.prefer_mined else None
        side = photo.pick_side_edit(list(c.side_edits), self.side_emb, a, c.side_edit_max_text_similarity, rng) \
            if mined is None and self.editor else None
        out["image_aligned"] = self._photo_plan(mined, side, None if side is None else r["reference_image"])
        return out

    def _photo_plan(self, mined, instruction: str | None, image: dict | None) -> dict | None:
        if mined is not None:
            j, margin = mined
            return {"image": self.pool.images[j], "source": "mined", "id": self.pool.ids[j], "margin": margin}
        if image is None or not instruction:
            return None
        return {"request": {"instruction": instruction, "image": image}}

    def _verify_photos(self, found: dict, anchors: dict) -> None:
        c = self.cfg
        edited = [(key, plan) for key, plan in found.items() if key[0] in anchors and plan.get("source") == "edited"]
        if edited:
            embs = photo.normalize(self._embed_images([plan["image"] for _, plan in edited]))
            for ((i, kind), plan), e in zip(edited, embs):
                a = anchors[i]
                if kind == "text_aligned":
                    plan["why"] = photo.check_text_aligned(e, a, c.text_margin, photo.Cuts.of(c))
                    plan["margin"] = photo.text_aligned_margin(e, a)
                else:
                    plan["why"] = photo.check_image_aligned(e, a, c.image_margin, c.min_reference_similarity,
                                                            photo.Cuts.of(c))
                    plan["margin"] = photo.image_aligned_margin(e, a)


class NegativesGPUStage(NegativesStage):
    """The same stage on a GPU actor (InstructPix2Pix); fewer rows per batch, up to two edits each."""

    num_gpus = 1.0
    batch_size = 32


def make_editor(kind: str, ip2p: dict | None = None) -> Editor | None:
    """The editor for a config's ``negatives.editor`` (ip2p: InstructPix2PixConfig as a dict)."""
    if kind == "none":
        return None
    if kind == "shapesworld":
        return ShapesWorldEditor()
    if kind == "instruct_pix2pix":
        from generators.negatives.ip2p import InstructPix2PixEditor

        return InstructPix2PixEditor(**(ip2p or {}))
    raise ValueError(f"negatives.editor={kind!r} is not known; use shapesworld, instruct_pix2pix or none")


def pool_file(cache_dir: str | Path, config_hash: str) -> Path:
    """Where the job writes the candidate pool of a run by default: a working file, kept under the
    cache (keyed by config hash), outside the dataset folder and its contract."""
    return Path(cache_dir) / "negatives-pool" / f"{config_hash}.parquet"


def negative_stage_specs(cfg: NegativesConfig | None, pool_path: str | Path, seed: int = 0,
                         embedder: Any = None) -> list[StageSpec]:
    """The negatives stage for a run (empty when disabled); a GPU actor for InstructPix2Pix on CUDA."""
    cfg = cfg or NegativesConfig()
    if not cfg.enabled:
        return []
    cls = NegativesStage
    if cfg.editor == "instruct_pix2pix" and cfg.instruct_pix2pix.device != "cpu":
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
        if cfg.instruct_pix2pix.device == "cuda" or cuda:
            cls = NegativesGPUStage
    return [StageSpec(cls, {"pool_path": str(pool_path), "seed": seed, "config": cfg.model_dump(mode="json"),
                            "embedder": embedder})]


__all__ = ["NegativesStage", "NegativesGPUStage", "negative_stage_specs", "pool_file", "write_pool"]
