"""Measuring what quantization costs: perplexity, and how often the report's scale cap would bite (report §6.2).

- ``perplexity(model, tokens)``: exp of the mean next-token cross-entropy over ``(B, T)`` token windows;
- ``next_token_logprobs`` + ``compare_logprobs``: perplexity, and how far a quantized model's next-token
  distributions move from the unquantized model's on the same tokens (mean KL divergence, top-1 agreement) — far more
  sensitive than perplexity or a benchmark score, which average many small changes away;
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
def next_token_logprobs(model: nn.Module, tokens: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
    """Log-softmax of the model's prediction at every position but the last: ``tokens (B, T)`` ->
    ``(B, T-1, vocab)`` fp32 on CPU (position ``t`` predicts ``tokens[:, t+1]``)."""
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be (batch, seq_len >= 2), got {tuple(tokens.shape)}")
    out = [F.log_softmax(model(chunk[:, :-1]).float(), dim=-1).cpu() for chunk in tokens.split(batch_size)]
    return torch.cat(out)                                                    # (B, T-1, vocab)


def compare_logprobs(logp: torch.Tensor, tokens: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
    """``{"ppl", "kl", "top1_agree"}`` of log-probs ``logp (B, T-1, vocab)`` (``next_token_logprobs``) on ``tokens
    (B, T)``. Against ``reference`` log-probs of the same shape (the unquantized model): ``kl`` = mean over positions
    of KL(reference ‖ model) in nats, ``top1_agree`` = share of positions whose most likely token is the same;
    both None without a reference."""
    if logp.shape[:2] != (tokens.shape[0], tokens.shape[1] - 1):
        raise ValueError(f"logp {tuple(logp.shape)} does not hold predictions for tokens {tuple(tokens.shape)}")
    nll = -logp.gather(-1, tokens[:, 1:, None].to(logp.device)).squeeze(-1)  # (B, T-1)
    out = {"ppl": math.exp(float(nll.double().mean())), "kl": None, "top1_agree": None}
    if reference is not None:
        if reference.shape != logp.shape:
            raise ValueError(f"reference {tuple(reference.shape)} and logp {tuple(logp.shape)} differ in shape")
        kl = (reference.exp() * (reference - logp)).sum(-1)                 # (B, T-1)
        out["kl"] = float(kl.double().mean())
        out["top1_agree"] = float((reference.argmax(-1) == logp.argmax(-1)).double().mean())
    return out


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
