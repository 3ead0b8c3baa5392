"""A Triton decode kernel for PagedAttention: reads keys and values through the block table, in place (vLLM §4.1).

The PyTorch reference (``paged_attention.py``) first copies a sequence's pages into one dense tensor, then attends.
This kernel never builds that copy: each program owns one (sequence, KV head, context split), walks its share of
the context ``BLOCK_N`` tokens at a time, looks each token's physical block up in the block table, and keeps an
online softmax (running max ``m``, denominator ``l``, weighted sum ``acc``; Milakov & Gimelshein 2018, as in
FlashAttention).

- **GQA**: the ``group = n_heads / n_kv_heads`` query heads of a KV head are the rows of one small matrix (padded to
  16 rows for ``tl.dot``), so each key/value is loaded once for the whole group;
- **split-K** (vLLM's PagedAttention V2, "flash-decoding"): at small batch the (sequence, KV head) pairs alone
  cannot fill an H100's 132 SMs, so the context is cut into ``num_splits`` pieces whose partial ``(m, l, acc)`` a
  second small kernel merges: ``out = Σ_s e^{m_s − M} acc_s / Σ_s e^{m_s − M} l_s`` with ``M = max_s m_s``.
  Two launches per call in all, whatever the batch. Each sequence's *own* context is split (the kernel reads its
  length), not the longest one the grid was sized for: a CUDA graph captured for an 8K-token table still spreads
  a 500-token context over all its splits instead of leaving it to the first.

``triton`` is imported when this module is; ``paged_attention.paged_decode_attention`` imports it only on CUDA.
Runs under ``TRITON_INTERPRET=1`` on CPU tensors too (how it can be debugged without a GPU).
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl


@triton.jit
def _paged_decode_kernel(q_ptr, k_ptr, v_ptr, bt_ptr, lens_ptr, acc_ptr, m_ptr, l_ptr, bt_stride, scale,
                         num_splits, H_KV: tl.constexpr, GROUP: tl.constexpr,
                         G_PAD: tl.constexpr, D: tl.constexpr, BS: tl.constexpr, BLOCK_N: tl.constexpr,
                         PRECISION: tl.constexpr):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    ctx = tl.load(lens_ptr + b)
    # this sequence's own context, cut into num_splits runs of whole BLOCK_N tiles: the grid is fixed (a CUDA graph
    # replays it for any context), the work each program does follows the context the sequence really has
    split_tokens = tl.cdiv(tl.cdiv(ctx, num_splits), BLOCK_N) * BLOCK_N
    start = split * split_tokens
    end = tl.minimum(start + split_tokens, ctx)
    g = tl.arange(0, G_PAD)
    d = tl.arange(0, D)
    heads = kvh * GROUP + g                                                   # (G_PAD,) query heads of this KV head
    q = tl.load(q_ptr + (b * H_KV * GROUP + heads)[:, None] * D + d[None, :],
                mask=(g < GROUP)[:, None], other=0.0)                        # (G_PAD, D)
    m = tl.full([G_PAD], float("-inf"), tl.float32)
    l = tl.zeros([G_PAD], tl.float32)
    acc = tl.zeros([G_PAD, D], tl.float32)
    for n0 in range(start, end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)                                        # (BLOCK_N,) token positions
        valid = n < end
        page = tl.load(bt_ptr + b * bt_stride + n // BS, mask=valid, other=0).to(tl.int64)
        offs = ((page * BS + n % BS) * H_KV + kvh)[:, None] * D + d[None, :]  # (BLOCK_N, D) into the pool
        k = tl.load(k_ptr + offs, mask=valid[:, None], other=0.0)
        v = tl.load(v_ptr + offs, mask=valid[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale         # (G_PAD, BLOCK_N)
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new[:, None])
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        l = l * alpha + tl.sum(p, 1)
        m = m_new
    row = (b * H_KV + kvh) * num_splits + split                              # partials (B, Hkv, splits, G_PAD, ...)
    tl.store(acc_ptr + (row * G_PAD + g)[:, None] * D + d[None, :], acc)
    tl.store(m_ptr + row * G_PAD + g, m)
    tl.store(l_ptr + row * G_PAD + g, l)


@triton.jit
def _merge_splits_kernel(acc_ptr, m_ptr, l_ptr, out_ptr, num_splits, H_KV: tl.constexpr, GROUP: tl.constexpr,
                         G_PAD: tl.constexpr, D: tl.constexpr):
    """``out = Σ_s e^{m_s − M} acc_s / Σ_s e^{m_s − M} l_s`` for one (sequence, KV head); writes ``(GROUP, D)``."""
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    g = tl.arange(0, G_PAD)
    d = tl.arange(0, D)
    base = (b * H_KV + kvh) * num_splits
    big_m = tl.full([G_PAD], float("-inf"), tl.float32)
    for s in range(0, num_splits):
        big_m = tl.maximum(big_m, tl.load(m_ptr + (base + s) * G_PAD + g))
    num = tl.zeros([G_PAD, D], tl.float32)
    den = tl.zeros([G_PAD], tl.float32)
    for s in range(0, num_splits):
        w = tl.exp(tl.load(m_ptr + (base + s) * G_PAD + g) - big_m)          # 0 for an empty split (m = -inf)
        num += tl.load(acc_ptr + ((base + s) * G_PAD + g)[:, None] * D + d[None, :]) * w[:, None]
        den += tl.load(l_ptr + (base + s) * G_PAD + g) * w
    out = num / den[:, None]
    tl.store(out_ptr + (b * H_KV * GROUP + kvh * GROUP + g)[:, None] * D + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=(g < GROUP)[:, None])


def num_splits_for(batch: int, n_kv_heads: int, max_context: int, min_tokens: int = 256) -> int:
    """Enough context splits to give ~2 programs per SM of an H100, with at least ``min_tokens`` tokens each."""
    wanted = max(1, -(-264 // (batch * n_kv_heads)))
    return max(1, min(wanted, -(-max_context // min_tokens)))


KERNEL_ENV = "MINILLM_PAGED_KERNEL"


def kernel_config() -> tuple[int, int, int | None]:
    """``(BLOCK_N, num_warps, num_stages)`` of the decode kernel: ``64, 4`` and Triton's default stages, or
    ``MINILLM_PAGED_KERNEL="BLOCK_N,warps,stages"`` (what ``benchmarks/paged_kernel.py`` measured best on a card)."""
    text = os.environ.get(KERNEL_ENV)
    if not text:
        return 64, 4, None
    try:
        block_n, warps, stages = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{KERNEL_ENV} must be 'BLOCK_N,num_warps,num_stages' (e.g. '64,4,3'), got {text!r}") from None
    if block_n < 16 or block_n & (block_n - 1) or warps not in (1, 2, 4, 8, 16) or stages < 1:
        raise ValueError(f"{KERNEL_ENV}: BLOCK_N must be a power of two >= 16, warps 1-16 (a power of two) and "
                         f"stages >= 1, got {text!r}")
    return block_n, warps, stages


def paged_decode_attention_triton(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                  block_tables: torch.Tensor, context_lens: torch.Tensor,
                                  max_context: int | None = None, num_splits: int | None = None,
                                  block_n: int | None = None, num_warps: int | None = None,
                                  num_stages: int | None = None) -> torch.Tensor:
    """``q (B, H, D)``, pools ``(num_blocks, bs, Hkv, D)``, ``block_tables (B, M)``, ``context_lens (B,)`` ->
    ``(B, H, D)``. ``max_context`` defaults to ``M · bs`` (pass the true maximum to save empty splits). The tile
    ``block_n`` and the launch's ``num_warps``/``num_stages`` default to ``kernel_config()``."""
    default_n, default_warps, default_stages = kernel_config()
    block_n, num_warps = block_n or default_n, num_warps or default_warps
    num_stages = num_stages or default_stages
    B, H, D = q.shape
    _, BS, H_KV, _ = k_cache.shape
    group = H // H_KV
    if D & (D - 1):
        raise ValueError(f"head_dim ({D}) must be a power of two for the Triton kernel; use impl='torch'")
    max_context = max_context or block_tables.shape[1] * BS
    splits = num_splits or num_splits_for(B, H_KV, max_context)
    g_pad = max(16, triton.next_power_of_2(group))
    acc = torch.empty(B, H_KV, splits, g_pad, D, dtype=torch.float32, device=q.device)
    m = torch.empty(B, H_KV, splits, g_pad, dtype=torch.float32, device=q.device)
    l = torch.empty_like(m)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    launch = dict(num_warps=num_warps) if num_stages is None else dict(num_warps=num_warps, num_stages=num_stages)
    _paged_decode_kernel[(B, H_KV, splits)](
        q.contiguous(), k_cache, v_cache, block_tables.to(torch.int32).contiguous(),
        context_lens.to(torch.int32).contiguous(), acc, m, l, block_tables.shape[1], 1.0 / math.sqrt(D),
        splits, H_KV=H_KV, GROUP=group, G_PAD=g_pad, D=D, BS=BS, BLOCK_N=block_n,
        PRECISION=precision, **launch)
    out = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
    _merge_splits_kernel[(B, H_KV)](acc, m, l, out, splits, H_KV=H_KV, GROUP=group, G_PAD=g_pad, D=D)
    return out
