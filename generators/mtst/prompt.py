"""The instruction the MTST generator is conditioned on (the MTST authors' prompt), and the tiny model's."""

INSTRUCTION = "How to change from one image to the other image?"
# The tiny ShapesWorld model's: a constant input carries nothing a model trained from scratch can use,
# and the authors' 11 words were 11 of the Q-Former's 20 tokens per pass and 12 of the LLM's ~51 per
# text; 2 words make a training step about 20% cheaper (docs/mtst.md). A checkpoint keeps INSTRUCTION.
TINY_INSTRUCTION = "Change?"
