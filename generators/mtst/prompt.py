"""The instruction the MTST generator is conditioned on (the MTST authors' prompt)."""

INSTRUCTION = "How to change from one image to the other image?"
