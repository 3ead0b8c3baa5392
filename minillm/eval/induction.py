"""The repeated-random-tokens test for induction heads (Olsson et al. 2022, "In-context Learning and Induction Heads").

A sequence of ``length`` random tokens followed by the same ``length`` tokens again. In the first copy nothing can be
predicted (random tokens); in the second, every token can be copied from ``length`` positions back, but only by a
model whose attention finds "the token that followed the previous occurrence of my current token" and copies it:
an induction head, a two-head circuit (one head marks each position with its previous token, a second matches on it).
Retrieval from a long context (a needle in a haystack, report §3.4.2) needs exactly that circuit, so a model with no
gain here cannot pass a needle test however long its context.

``induction_score`` returns the mean loss (nats/token) on each copy and their difference, ``gain``: about 0 for a
model without induction heads, up to the first copy's loss (several nats) for one that copies perfectly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def induction_score(model: nn.Module, vocab_size: int, n_seqs: int = 16, length: int = 64, seed: int = 0,
                    low_id: int = 0) -> dict:
    """Loss on the first and the second copy of ``n_seqs`` random sequences of ``length`` tokens drawn uniformly from
    ``[low_id, vocab_size)`` (``low_id``: skip special and byte tokens). Returns ``{"first", "second", "gain"}`` in
    nats per token; the first token of each copy is left out (nothing precedes the first, and the second's first
    token follows the end of a random sequence)."""
    if length < 2 or n_seqs < 1 or not 0 <= low_id < vocab_size - 1:
        raise ValueError(f"induction_score needs length >= 2, n_seqs >= 1 and 0 <= low_id < vocab_size - 1, got "
                         f"length={length}, n_seqs={n_seqs}, low_id={low_id}, vocab_size={vocab_size}")
    max_len = getattr(getattr(model, "cfg", None), "max_seq_len", None)
    if max_len is not None and 2 * length > max_len:
        raise ValueError(f"two copies of {length} tokens exceed the model's max_seq_len={max_len}; lower length")
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(low_id, vocab_size, (n_seqs, length), generator=g)          # (N, length)
    seq = torch.cat([half, half], dim=1).to(next(model.parameters()).device)        # (N, 2·length)
    was_training = model.training
    model.eval()
    logits = model(seq[:, :-1]).float()                                              # (N, 2·length - 1, V)
    model.train(was_training)
    nll = F.cross_entropy(logits.flatten(0, 1), seq[:, 1:].flatten(), reduction="none").view(n_seqs, -1)
    first = float(nll[:, :length - 1].mean())                    # targets 1 … length-1: the first copy
    second = float(nll[:, length:].mean())                       # targets length+1 … 2·length-1: the second copy
    return {"first": first, "second": second, "gain": first - second}
