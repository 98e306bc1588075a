"""Tiny MTST models and seed sets shared by the generator tests."""
import pytest

from generators.mtst.config import INSTRUCTION, MTSTModelConfig
from generators.mtst.model import MTSTGenerator
from generators.mtst.tokenizer import build_word_tokenizer
from pipeline.shapesworld.sets.mtst import SeedSet

# Small but real: LLM head_dim 64 (hidden 128, 2 heads) as vLLM's CPU attention needs.
SMALL = MTSTModelConfig(vision_hidden=32, vision_layers=1, qformer_hidden=32, qformer_layers=1, num_query_tokens=4, query_grid=2,
                        image_size=32, patch_size=8, llm_hidden=128, llm_layers=1, llm_heads=2)


@pytest.fixture(scope="session")
def seed_set():
    return SeedSet.random(24, image_size=32, seed=0)


@pytest.fixture(scope="session")
def tokenizer(seed_set):
    return build_word_tokenizer([*seed_set.texts(), INSTRUCTION])


@pytest.fixture
def tiny_model(tokenizer):
    return MTSTGenerator.tiny(tokenizer, SMALL.model_copy(update={"image_size": 32}), seed=0)
