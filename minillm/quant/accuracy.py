"""Measuring what quantization costs: perplexity, and how often the report's scale cap would bite (report §6.2).

- ``perplexity(model, tokens)``: exp of the mean next-token cross-entropy over ``(B, T)`` token windows;
- ``activation_row_absmax(model, tokens, names)``: the absmax of every token row entering the chosen linears —
  the values a dynamic row-wise scale is computed from, so one can count the rows above the cap (1200) and see the
  outliers that make per-tensor scales poor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def perplexity(model: nn.Module, tokens: torch.Tensor, batch_size: int = 4) -> float:
    """exp(mean cross-entropy of predicting ``tokens[:, 1:]`` from ``tokens[:, :-1]``). ``tokens (B, T)`` ints."""
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be (batch, seq_len >= 2), got {tuple(tokens.shape)}")
    total, count = 0.0, 0
    for chunk in tokens.split(batch_size):
        logits = model(chunk[:, :-1])                                         # (b, T-1, vocab)
        nll = F.cross_entropy(logits.float().flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum")
        total, count = total + float(nll), count + chunk[:, 1:].numel()
    return math.exp(total / count)


@torch.no_grad()
def activation_row_absmax(model: nn.Module, tokens: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Run ``model(tokens)`` and return, per module name, the absmax of each input row ``(B·T,)`` (fp32, CPU)."""
    rows: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:
        def hook(module, args, name=name):
            x = args[0]
            rows[name] = x.detach().abs().float().amax(dim=-1).flatten().cpu()  # (B·T,)
        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        model(tokens)
    finally:
        for h in hooks:
            h.remove()
    return rows
