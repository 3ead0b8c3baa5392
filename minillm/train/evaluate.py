"""Validation loss and bits per byte (report §3.4; the evaluation used by every later chapter).

- loss: mean next-token cross-entropy (nats) over the targets of a packed validation stream;
- bits per byte: the same total cross-entropy in bits, divided by the number of UTF-8 bytes the targets stand for.
  Unlike the loss per token, it does not depend on the tokenizer, so models with different vocabularies (ours, 8K;
  Llama 3's, 128K) can be compared on the same text.

``token_byte_lengths`` gives the bytes each token id stands for: for a byte-level BPE every character of a
vocabulary entry is one byte, and special tokens stand for no text (0 bytes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minillm.train.optim import autocast
from minillm.train.packing import IGNORE, PackedData, batch_at, target_bytes, token_byte_lengths  # noqa: F401


def token_losses(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor,
                 doc_ids: torch.Tensor | None) -> torch.Tensor:
    """Per-target cross-entropy in nats, ``(B, T)`` (0 where the target is ``IGNORE``); logits in fp32."""
    logits = model(tokens, doc_ids=doc_ids)                                 # (B, T, vocab)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                           reduction="none").view_as(targets)               # (B, T)


@torch.no_grad()
def window_losses(model: nn.Module, data: PackedData, seq_len: int, n_windows: int | None = None,
                  batch_size: int = 16) -> torch.Tensor:
    """Mean loss (nats/token) of each of the first ``n_windows`` windows of ``seq_len`` tokens of ``data`` (all by
    default), documents masked apart: ``(n_windows,)`` fp32. One number per window, for paired tests of two models on
    the same text (``minillm.eval.paired_difference``)."""
    windows = data.n_windows(seq_len) if n_windows is None else min(n_windows, data.n_windows(seq_len))
    if windows < 1:
        raise ValueError(f"the stream ({len(data)} tokens) holds no window of {seq_len}; use a shorter seq_len")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, windows, batch_size):
        batch = batch_at(data, start * seq_len, min(batch_size, windows - start), seq_len).to(device)
        losses = token_losses(model, batch.tokens, batch.targets, batch.doc_ids)   # (rows, T)
        kept = (batch.targets != IGNORE).sum(dim=1)                                 # (rows,)
        out.append((losses.sum(dim=1) / kept).float().cpu())                        # (rows,)
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: nn.Module, data: PackedData, seq_len: int, batch_size: int = 8, max_batches: int | None = None,
             use_doc_mask: bool = True, amp: bool = True) -> dict[str, float]:
    """Loss (nats/token) and bits per byte over the first ``max_batches`` batches of ``data`` (all by default).

    Returns ``{"loss", "bpb", "tokens", "bytes"}`` (``bpb`` is NaN when ``data`` has no ``token_bytes``).
    """
    if data.n_windows(seq_len) < 1:
        raise ValueError(f"the validation stream ({len(data)} tokens) is shorter than one sequence of {seq_len}; "
                         f"use a shorter seq_len or more validation documents")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nats, total_tokens, total_bytes = 0.0, 0, 0
    windows = data.n_windows(seq_len)
    n_batches = math.ceil(windows / batch_size) if max_batches is None else min(max_batches,
                                                                                 math.ceil(windows / batch_size))
    for b in range(n_batches):
        rows = min(batch_size, windows - b * batch_size)
        position = b * batch_size * seq_len
        batch = batch_at(data, position, rows, seq_len).to(device)
        with autocast(device, amp):
            losses = token_losses(model, batch.tokens, batch.targets, batch.doc_ids if use_doc_mask else None)
        total_nats += float(losses.double().sum())
        total_tokens += int((batch.targets != IGNORE).sum())
        if data.token_bytes is not None:
            total_bytes += int(target_bytes(data, position, rows, seq_len).sum())
    model.train(was_training)
    bpb = total_nats / math.log(2) / total_bytes if total_bytes else float("nan")
    return {"loss": total_nats / total_tokens, "bpb": bpb, "tokens": total_tokens, "bytes": total_bytes}
