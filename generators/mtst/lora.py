"""Optional LoRA adapters on the frozen LLM of a checkpoint-based generator (peft).

The adapters are injected in place (``peft.inject_adapter_in_model``), so parameter names stay
``language_model.<...>.q_proj.lora_A.default.weight`` and a fine-tuned model saves them with the
other trained parts. Loading for inference merges them into the LLM's weights, so the text stage
and the vLLM backend see a plain LLM.
"""
from __future__ import annotations

from torch import nn


def add_lora(model, rank: int, alpha: float, targets) -> None:
    """Adapters of ``rank`` on the LLM's ``targets`` modules, trainable; the base weights stay frozen."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ImportError("train.lora_rank needs peft, which is not installed: pip install peft==0.21.*") from None
    cfg = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=list(targets), lora_dropout=0.0,
                     bias="none")
    inject_adapter_in_model(cfg, model.language_model)
    for name, p in model.language_model.named_parameters():
        p.requires_grad_("lora_" in name)
    model.lora = {"rank": int(rank), "alpha": float(alpha), "targets": list(targets)}


def merge_lora(model) -> None:
    """Fold the adapters into the base weights and put the plain layers back."""
    from peft.tuners.lora import LoraLayer

    for parent in list(model.language_model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(parent, child_name, child.get_base_layer())
    model.lora = None


def has_lora(module: nn.Module) -> bool:
    return any("lora_" in name for name, _ in module.named_parameters())
