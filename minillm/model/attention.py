"""Causal self-attention with grouped-query attention (GQA) and document masks (report §3.2).

One code path covers three designs through ``n_kv_heads``:
- MHA (multi-head): ``n_kv_heads == n_heads``, every query head has its own key/value head;
- MQA (multi-query): ``n_kv_heads == 1``, all query heads share one key/value head;
- GQA (grouped-query, Ainslie et al. 2023): ``n_heads // n_kv_heads`` query heads share each key/value head.
  Llama 3 uses 8 KV heads at every size, which shrinks the KV cache (and its memory traffic) 4-16×.

Query head ``h`` reads key/value head ``h // group`` (Hugging Face's ``repeat_kv`` order).

Document masks: pre-training packs several documents into one sequence; the report (§3.4.1) masks attention so that a
token attends only to earlier tokens *of the same document*. ``document_mask`` builds that mask from document ids.

``attention_ref`` is the plain formula; ``sdpa_attention`` calls PyTorch's fused kernel. Tests check they agree.
Masks are boolean, ``True`` where a query may attend to a key, and broadcast over heads: ``(B or 1, 1, T, S)``.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from minillm.config import ModelConfig
from minillm.model.linear import Linear
from minillm.model.rope import apply_rope


def causal_mask(q_len: int, k_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(q_len, k_len)`` bool: query i (the last ``q_len`` of ``k_len`` positions) sees keys ``j <= i + k_len - q_len``."""
    offset = k_len - q_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(diagonal=offset)


def document_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """Causal mask restricted to each document. ``doc_ids (B, T)`` ints -> ``(B, 1, T, T)`` bool."""
    if doc_ids.dim() != 2 or doc_ids.dtype.is_floating_point:
        raise ValueError(f"doc_ids must be an integer tensor of shape (batch, seq_len), got {tuple(doc_ids.shape)} "
                         f"{doc_ids.dtype}")
    T = doc_ids.shape[1]
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]                  # (B, T, T)
    return (same_doc & causal_mask(T, T, doc_ids.device))[:, None]          # (B, 1, T, T)


def attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                  is_causal: bool = False) -> torch.Tensor:
    """softmax(QKᵀ/√d + mask)·V, written out. q ``(B, H, T, D)``, k/v ``(B, Hkv, S, D)`` -> ``(B, H, T, D)``."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)                                   # (B, H, S, D)
    v = v.repeat_interleave(group, dim=1)
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, S)
    if is_causal:
        mask = causal_mask(q.shape[2], k.shape[2], q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                   is_causal: bool = False) -> torch.Tensor:
    """The same with ``F.scaled_dot_product_attention``. Shapes as ``attention_ref``."""
    B, H, T, D = q.shape
    group = H // k.shape[1]
    if T == 1 and not is_causal and _decode_with_matmul(q, k):
        return decode_attention_matmul(q, k, v, mask)
    if group > 1 and T == 1 and not is_causal:
        # decode: the `group` query heads of a KV head become `group` query rows against the same keys,
        # so no key/value copy is made. (B, Hkv, group, D) x (B, Hkv, S, D); mask (B, 1, 1, S) broadcasts.
        out = F.scaled_dot_product_attention(q.view(B, H // group, group, D), k, v, attn_mask=mask)
        return out.reshape(B, H, 1, D)                                      # (CUDA kernels may return it strided)
    if group > 1:
        k = k.repeat_interleave(group, dim=1)                               # (B, H, S, D)
        v = v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


def _decode_with_matmul(q: torch.Tensor, k: torch.Tensor) -> bool:
    """``MINILLM_DECODE_ATTN``: ``sdpa``, ``matmul`` or ``auto`` (default): matmuls on CUDA when the fused kernel would
    get fewer than 64 (sequence, KV head) blocks. On an H100 with Llama-3-8B shapes at 4K context (benchmarks/RESULTS.md)
    matmuls decoded batch 1 at 117 tok/s vs 93 for SDPA, while SDPA won at batch 16 (1364 vs 1245)."""
    choice = os.environ.get("MINILLM_DECODE_ATTN", "auto")
    if choice not in ("auto", "sdpa", "matmul"):
        raise ValueError(f"MINILLM_DECODE_ATTN must be auto, sdpa or matmul, got {choice!r}")
    if choice == "auto":
        return q.device.type == "cuda" and q.shape[0] * k.shape[1] < 64
    return choice == "matmul"


def decode_attention_matmul(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Decode attention as two batched matmuls (used for small decode batches on GPUs, see ``_decode_with_matmul``).

    At batch 1 a fused kernel gets one thread block per (sequence, KV head) — 8 for Llama 3 — to stream the whole
    cache; cuBLAS tiles ``q·Kᵀ`` over the keys instead. q ``(B, H, 1, D)``, k/v ``(B, Hkv, S, D)`` -> ``(B, H, 1, D)``."""
    B, H, _, D = q.shape
    Hkv = k.shape[1]
    qg = q.view(B, Hkv, H // Hkv, D)                                        # (B, Hkv, group, D)
    scores = (qg @ k.transpose(-2, -1)).float() / math.sqrt(D)              # (B, Hkv, group, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))                   # mask (B, 1, 1, S)
    out = scores.softmax(dim=-1).to(v.dtype) @ v                            # (B, Hkv, group, D)
    return out.reshape(B, H, 1, D)


class Attention(nn.Module):
    """Multi-head attention with ``n_kv_heads`` key/value heads and RoPE. ``(B, T, dim) -> (B, T, dim)``.

    The q, k and v projections are one fused matrix ``wqkv`` (one matmul instead of three).
    """

    def __init__(self, cfg: ModelConfig, impl: str = "sdpa"):
        super().__init__()
        if impl not in ("sdpa", "ref"):
            raise ValueError(f"attention impl must be 'sdpa' or 'ref', got {impl!r}")
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_size, self.kv_size = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.wqkv = Linear(cfg.dim, self.q_size + 2 * self.kv_size)
        self.wo = Linear(self.q_size, cfg.dim)
        self.attend = sdpa_attention if impl == "sdpa" else attention_ref

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
                is_causal: bool = False, cache=None, layer: int = 0, start=0) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv = self.n_heads, self.n_kv_heads
        qkv = self.wqkv(x).view(B, T, H + 2 * Hkv, self.head_dim).transpose(1, 2)  # (B, H + 2·Hkv, T, D)
        # queries and keys are rotated in one call; at decode time every saved operator call counts
        q, k = apply_rope(qkv[:, :H + Hkv], cos, sin).split([H, Hkv], dim=1)     # (B, H, T, D), (B, Hkv, T, D)
        v = qkv[:, H + Hkv:]                                                      # (B, Hkv, T, D)
        if cache is not None:
            k, v = cache.update(layer, k, v, start)                         # (B, Hkv, S, D): all cached keys
        out = self.attend(q, k, v, mask, is_causal)                         # (B, H, T, D)
        return self.wo(out.transpose(1, 2).reshape(B, T, self.q_size))
