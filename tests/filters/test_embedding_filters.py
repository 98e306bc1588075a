"""Photo rows: the embed stage writes vectors once, the CLIP-based filters read them."""
import numpy as np
import pytest

from filters.clip_direction import ClipDirectionFilter
from filters.embed_columns import EmbedColumnsStage
from filters.image_similarity import ImageSimilarityFilter
from filters.roundtrip import RoundtripFilter
from filters.text_image_consistency import TextImageConsistencyFilter
from tests.filters.rows import batch_of
from tests.generators.test_negatives import PixelEmbedder, vec_image


def photo(ref, tgt, text, rev=None, i=0):
    return {"triplet_id": f"p{i}", "reference_id": f"r{i}", "target_id": f"t{i}", "reference_image": vec_image(ref),
            "target_image": vec_image(tgt), "modification_text": text, "reverse_text": rev,
            "reference_scene": None, "target_scene": None, "scores": {}}


EMB = PixelEmbedder({"": [0.0, 0.0, 0.1], "add green": [0.0, 1.0, 0.1], "remove green": [0.0, -1.0, 0.1],
                     "add blue": [0.0, 0.0, 1.0]})


@pytest.fixture()
def embedded():
    rows = [photo([1, 0, 0], [0.6, 0.8, 0], "add green", "remove green", 0),   # right text both ways
            photo([1, 0, 0], [0.6, 0.8, 0], "add blue", "add blue", 1),        # hallucinated text
            photo([1, 0, 0], [0, 0, 1], "add green", None, 2)]                 # unrelated target
    return EmbedColumnsStage(embedder=EMB)(batch_of(rows))


def test_direction_consistency_and_roundtrip_separate_good_from_hallucinated(embedded):
    d = ClipDirectionFilter(min_score=0.2)(embedded)
    assert d["scores"][0]["clip_direction"] > 0.85 and d["scores"][1]["clip_direction"] < 0.2
    assert d["reject_reasons"][:2] == [[], ["clip_direction:low_clip_direction"]]
    c = TextImageConsistencyFilter(min_score=0.1)(embedded)
    assert c["reject_reasons"][0] == [] and c["reject_reasons"][1] != []
    r = RoundtripFilter(min_embedding_score=0.2)(embedded)
    assert r["reject_reasons"][:2] == [[], ["roundtrip:failed"]] and "roundtrip" not in r["scores"][2]


def test_image_similarity_band(embedded):
    out = ImageSimilarityFilter(low=0.5, high=0.98)(embedded)
    assert out["scores"][0]["image_similarity"] == pytest.approx(0.6, abs=0.02)
    assert out["reject_reasons"][2] == ["image_similarity:too_different"]


def test_no_embedder_leaves_photo_rows_unscored():
    b = EmbedColumnsStage(embedder=None)(batch_of([photo([1, 0, 0], [0, 1, 0], "x")]))
    out = ClipDirectionFilter()(b)
    assert out["scores"] == [{}] and out["reject_reasons"] == [[]]
    assert np.all([v is None for v in b["emb_reference"]])
