"""AdamW with decay / no-decay parameter groups, gradient clipping and mixed precision (report §3.4).

The report gives the learning-rate schedule but not the other AdamW settings; we take Llama 2's (Touvron et al. 2023,
§2.2): β₁ = 0.9, β₂ = 0.95, ε = 10⁻⁵, weight decay 0.1 and gradient clipping at norm 1.0.

Which weights decay: weight decay pulls a matrix towards 0, a prior that makes sense for the matmul weights (the
attention and FFN projections and the output head). It does not for

- RMSNorm gains, whose natural value is 1 (decaying them shrinks every activation), and
- the token embedding table: a row is only updated when its token occurs, but decay shrinks every row every step, so
  rare tokens would fade towards 0 (the choice of OLMo, Megatron-LM's ``no_weight_decay_cond`` and most open
  recipes; nanoGPT decays embeddings — a tied output head is the embedding, so it follows the embedding here).

bf16 autocast is used on CUDA only: the CPU computes in fp32 (bf16 matmuls there are slower and less accurate), which
also keeps CPU runs bit-reproducible for the exact-resume test.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class OptimConfig:
    """AdamW hyper-parameters. ``lr`` is only the initial value: the trainer sets it every step from the schedule."""

    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-5
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        if self.weight_decay < 0:
            raise ValueError(f"OptimConfig.weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"OptimConfig.{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.eps <= 0:
            raise ValueError(f"OptimConfig.eps must be positive, got {self.eps}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"OptimConfig.grad_clip must be positive, or None to disable clipping; got "
                             f"{self.grad_clip}")


def is_no_decay(name: str, param: nn.Parameter, module: nn.Module | None = None) -> bool:
    """True for norm gains / biases (1-D) and embedding tables."""
    return param.dim() < 2 or isinstance(module, nn.Embedding) or "embed" in name


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ``{"params": matmul weights, "weight_decay": wd}`` and ``{..., "weight_decay": 0}``.

    Parameters shared between modules (a tied embedding/head) appear once, in the group of their first name.
    Frozen parameters (``requires_grad=False``) are left out.
    """
    owner = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            owner.setdefault(id(p), (f"{mod_name}.{p_name}".lstrip("."), module))
    decay, no_decay = [], []
    for name, p in model.named_parameters():                              # deduplicated, in registration order
        if not p.requires_grad:
            continue
        first_name, module = owner[id(p)]
        (no_decay if is_no_decay(first_name, p, module) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def make_optimizer(model: nn.Module, cfg: OptimConfig = OptimConfig(), lr: float = 0.0) -> torch.optim.AdamW:
    """AdamW over ``param_groups(model, cfg.weight_decay)``; decoupled decay (Loshchilov & Hutter, 2019).

    On CUDA the fused kernel (one launch for every tensor, as nanoGPT and torchtitan use) replaces the per-tensor
    loop; elsewhere the default implementation keeps CPU runs as they were."""
    groups = param_groups(model, cfg.weight_decay)
    params = [p for g in groups for p in g["params"]]
    on_cuda = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=on_cuda or None)


def clip_gradients(model: nn.Module, max_norm: float | None) -> float:
    """Clip the global gradient norm to ``max_norm`` (no-op when None); return the norm before clipping.

    Under DDP the gradients are already averaged over ranks when this runs, so every rank clips identically."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm is None:
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))) if params else 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def autocast(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op elsewhere (fp32 on the CPU)."""
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
