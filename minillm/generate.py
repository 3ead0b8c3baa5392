"""Autoregressive generation: prefill, then one token per decode step (report §6).

``generate(model, prompts, max_new_tokens, ...)`` takes prompts of different lengths as lists of token ids. They are
*left*-padded into one batch so that every sequence's next token sits in the same column; each sequence gets its own
RoPE positions (counting only its real tokens) and a mask that hides its padding, so a padded prompt produces exactly
the tokens it would produce alone.

Sampling: greedy (``temperature=0``), or softmax at ``temperature`` restricted to the ``top_k`` most likely tokens
and/or the smallest set whose probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020).
"""

from __future__ import annotations

import math
import numbers
from typing import Iterator, Sequence

import numpy as np
import torch

from minillm.model.llama import Llama


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of ``logits (B, vocab)`` -> ``(B,)``."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]                 # (B, 1): the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs                           # probability mass ranked above each token
        drop_sorted = before >= top_p                                   # the top token always stays (before == 0)
        drop = drop_sorted.scatter(-1, order, drop_sorted)             # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, owner: str = "") -> None:
    """``ValueError`` naming the field unless ``temperature`` is a finite number >= 0, ``top_k`` None or an int >= 1
    and ``top_p`` None or in (0, 1]. ``owner`` prefixes the field names (``"SamplingParams."``)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"{owner}temperature must be a finite number >= 0 (0 is greedy, 1 samples the model's "
                         f"distribution), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"{owner}top_k must be None (no limit) or an int >= 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < top_p <= 1.0):                   # NaN fails both comparisons
        raise ValueError(f"{owner}top_p must be None (no nucleus) or in (0, 1], got {top_p!r}")


def check_prompt(prompt, vocab_size: int, max_seq_len: int, max_new_tokens: int, index: int = 0) -> list[int]:
    """The token ids of ``prompts[index]`` as a list of Python ints, or an error saying what is wrong with it.

    Accepts a list/tuple (or 1-D integer tensor or array) of Python ints or NumPy integer scalars. A float or bool id
    is a ``TypeError`` (never truncated); an id outside ``[0, vocab_size)``, an empty prompt or one too long for
    ``max_seq_len`` with ``max_new_tokens`` more is a ``ValueError``. ``minillm.generate`` and ``LLMEngine`` share it.
    """
    where = f"prompts[{index}]"
    if isinstance(prompt, (torch.Tensor, np.ndarray)):
        if prompt.ndim != 1:
            raise ValueError(f"{where} must be 1-D token ids, got shape {tuple(prompt.shape)}")
        prompt = prompt.tolist()                                          # Python ints, floats or bools
    if isinstance(prompt, (str, bytes)) or not isinstance(prompt, (list, tuple)):
        raise ValueError(f"{where} must be a non-empty list of token ids, got {type(prompt).__name__}")
    if len(prompt) == 0:
        raise ValueError(f"{where} must be a non-empty list of token ids, got an empty one")
    for j, t in enumerate(prompt):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"{where}[{j}] is {t!r} ({type(t).__name__}): token ids must be ints "
                            f"(round or cast explicitly; floats are not truncated)")
    ids = [int(t) for t in prompt]
    bad = [(j, t) for j, t in enumerate(ids) if not 0 <= t < vocab_size]
    if bad:
        shown = ", ".join(f"[{j}]={t}" for j, t in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise ValueError(f"{where} has {len(bad)} token id(s) outside [0, vocab_size={vocab_size}): {shown}")
    if len(ids) + max_new_tokens > max_seq_len:
        raise ValueError(f"{where} ({len(ids)} tokens) + {max_new_tokens} new tokens exceeds the model's context "
                         f"max_seq_len={max_seq_len}: shorten the prompt or ask for fewer new tokens")
    return ids


def check_prompts(prompts, vocab_size: int, max_seq_len: int, max_new_tokens: int) -> list[list[int]]:
    """``check_prompt`` for each of a non-empty list of prompts."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError("prompts must be a non-empty list of token-id lists, e.g. [[1, 2, 3]]")
    return [check_prompt(p, vocab_size, max_seq_len, max_new_tokens, i) for i, p in enumerate(prompts)]


def _check(model: Llama, prompts, max_new_tokens, temperature, top_k, top_p) -> list[list[int]]:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    check_sampling(temperature, top_k, top_p)
    return check_prompts(prompts, model.cfg.vocab_size, model.cfg.max_seq_len, max_new_tokens)


@torch.inference_mode()
def decode_steps(model: Llama, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Yield the next token of every prompt ``(B,)`` at each step (``max_new_tokens`` steps at most)."""
    prompts = _check(model, prompts, max_new_tokens, temperature, top_k, top_p)
    device = model.tok_embeddings.weight.device
    B, P = len(prompts), max(len(p) for p in prompts)
    tokens = torch.zeros(B, P, dtype=torch.long, device=device)
    valid = torch.zeros(B, P, dtype=torch.bool, device=device)         # False on left padding
    for i, p in enumerate(prompts):
        tokens[i, P - len(p):] = torch.tensor(p, device=device)
        valid[i, P - len(p):] = True
    padded = not bool(valid.all())
    positions = (valid.cumsum(dim=1) - 1).clamp(min=0)                  # (B, P): real tokens count from 0
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)

    def full_mask(valid_keys: torch.Tensor, q_len: int) -> torch.Tensor | None:
        # (B, 1, q_len, S): causal, hide padded keys; a padded query row keeps its own slot so softmax is defined
        if not padded:
            return None
        S = valid_keys.shape[1]
        rows = torch.arange(q_len, device=device)[:, None] + (S - q_len)   # absolute slot of each query
        cols = torch.arange(S, device=device)[None, :]
        return ((cols <= rows) & valid_keys[:, None, None, :]) | (cols == rows)

    cache = model.new_cache(B, P + max_new_tokens) if use_cache else None
    if use_cache:
        logits = model(tokens, positions=positions, mask=full_mask(valid, P), cache=cache, start=0, last_only=True)
    for step in range(max_new_tokens):
        if not use_cache:  # recompute the whole prefix every step (the baseline the cache removes)
            mask = full_mask(valid, tokens.shape[1])
            logits = model(tokens, positions=positions, mask=mask, last_only=True)
        nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)  # (B,)
        yield nxt
        if step == max_new_tokens - 1:
            break
        new_pos = positions[:, -1:] + 1                                  # (B, 1)
        valid = torch.cat([valid, valid.new_ones(B, 1)], dim=1)
        if use_cache:
            mask = valid[:, None, None, :] if padded else None           # (B, 1, 1, S)
            logits = model(nxt[:, None], positions=new_pos, mask=mask, cache=cache, start=P + step)
        else:
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        positions = torch.cat([positions, new_pos], dim=1) if not use_cache else new_pos


def generate(model: Llama, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, stop_tokens: Sequence[int] | None = None,
             seed: int | None = None, use_cache: bool = True) -> list[list[int]]:
    """New token ids for each prompt, stopping at the first of ``stop_tokens`` (not included) or after
    ``max_new_tokens``. Greedy by default; ``seed`` makes sampling repeatable."""
    stop = set(stop_tokens or ())
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for nxt in decode_steps(model, prompts, max_new_tokens, temperature, top_k, top_p, seed, use_cache):
        for i, t in enumerate(nxt.tolist()):
            if not done[i]:
                if t in stop:
                    done[i] = True
                else:
                    out[i].append(t)
        if all(done):
            break
    return out


def stream(model: Llama, prompt: Sequence[int], max_new_tokens: int, stop_tokens: Sequence[int] | None = None,
           **sampling) -> Iterator[int]:
    """Yield the new tokens of one prompt as they are decoded (for chat)."""
    stop = set(stop_tokens or ())
    for nxt in decode_steps(model, [prompt], max_new_tokens, **sampling):
        t = int(nxt[0])
        if t in stop:
            return
        yield t
