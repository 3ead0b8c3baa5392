"""PagedAttention in plain PyTorch: attention over keys and values stored in scattered blocks (vLLM §4.1).

The KV pool of one layer is ``(num_blocks, block_size, n_kv_heads, head_dim)`` for keys and the same for values
(the flash-attention / nano-vllm layout). Token ``t`` of a sequence lives in physical block ``table[t // bs]`` at
offset ``t % bs``; its flat **slot** is ``table[t // bs] · bs + t % bs``.

- ``write_kv`` stores the new tokens' keys/values at their slots (every step, before attention);
- ``gather_kv`` reads a batch of block tables back into dense ``(B, S, Hkv, D)`` tensors — the reference way to
  attend over pages: copy them together, then run ordinary attention;
- ``paged_decode_attention_torch``: one query token per sequence (decode), batched, padding masked;
- ``paged_prefill_attention_torch``: a chunk of ``q_len`` new tokens of one sequence attending causally to its
  ``context_len`` tokens (the cached prefix plus the chunk itself: chunked prefill and prefix-cache hits);
- ``paged_decode_attention`` dispatches to the Triton kernel (``paged_attention_triton.py``, which reads the pages
  in place instead of copying them) on CUDA, and to the PyTorch gather elsewhere.

Query head ``h`` reads KV head ``h // (n_heads // n_kv_heads)`` (GQA), as in ``minillm.model.attention``.
"""

from __future__ import annotations

import torch

from minillm.model.attention import causal_mask, sdpa_attention


def write_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             slots: torch.Tensor) -> None:
    """Store ``k, v (N, Hkv, D)`` at flat ``slots (N,)`` of one layer's pool ``(num_blocks, bs, Hkv, D)``."""
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, k)   # (num_blocks·bs, Hkv, D)
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, v)


def slots_for(table: list[int], start: int, end: int, block_size: int) -> list[int]:
    """Flat slots of positions ``start .. end`` of a sequence with block table ``table``."""
    return [table[t // block_size] * block_size + t % block_size for t in range(start, end)]


def gather_kv(cache: torch.Tensor, block_tables: torch.Tensor) -> torch.Tensor:
    """Pages to dense: ``cache (num_blocks, bs, Hkv, D)``, ``block_tables (B, M)`` -> ``(B, M·bs, Hkv, D)``."""
    B, M = block_tables.shape
    pages = cache[block_tables.long()]                                # (B, M, bs, Hkv, D)
    return pages.view(B, M * cache.shape[1], *cache.shape[2:])


def paged_decode_attention_torch(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                 block_tables: torch.Tensor, context_lens: torch.Tensor) -> torch.Tensor:
    """One new token per sequence. ``q (B, H, D)``; ``block_tables (B, M)`` (padding entries any valid block);
    ``context_lens (B,)`` tokens to attend to, the new one included -> ``(B, H, D)``."""
    k = gather_kv(k_cache, block_tables).transpose(1, 2)             # (B, Hkv, S, D)
    v = gather_kv(v_cache, block_tables).transpose(1, 2)
    S = k.shape[2]
    valid = torch.arange(S, device=q.device)[None, :] < context_lens[:, None].to(q.device)   # (B, S)
    out = sdpa_attention(q[:, :, None], k, v, mask=valid[:, None, None, :])                   # (B, H, 1, D)
    return out[:, :, 0]


def paged_prefill_attention_torch(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                  table: torch.Tensor, context_len: int) -> torch.Tensor:
    """The last ``q_len`` of ``context_len`` tokens of one sequence, causally. ``q (q_len, H, D)``,
    ``table (M,)`` -> ``(q_len, H, D)``."""
    q_len = q.shape[0]
    k = gather_kv(k_cache, table[None])[:, :context_len].transpose(1, 2)   # (1, Hkv, ctx, D)
    v = gather_kv(v_cache, table[None])[:, :context_len].transpose(1, 2)
    q = q.transpose(0, 1)[None]                                             # (1, H, q_len, D)
    if q_len == context_len:
        out = sdpa_attention(q, k, v, is_causal=q_len > 1)
    else:
        out = sdpa_attention(q, k, v, mask=causal_mask(q_len, context_len, q.device))
    return out[0].transpose(0, 1)                                           # (q_len, H, D)


def triton_available(device: torch.device) -> bool:
    """Whether the Triton decode kernel can run here (a CUDA device and the ``triton`` package)."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, context_lens: torch.Tensor,
                           impl: str = "auto", max_context: int | None = None) -> torch.Tensor:
    """Decode attention over pages: ``impl`` ``"triton"``, ``"torch"`` or ``"auto"`` (Triton on CUDA). Shapes as
    ``paged_decode_attention_torch``; ``max_context`` (the longest context) lets the kernel skip empty splits."""
    if impl == "auto":
        impl = "triton" if triton_available(q.device) else "torch"
    if impl == "triton":
        from minillm.infer.paged_attention_triton import paged_decode_attention_triton

        return paged_decode_attention_triton(q, k_cache, v_cache, block_tables, context_lens, max_context)
    if impl != "torch":
        raise ValueError(f"impl must be 'auto', 'triton' or 'torch', got {impl!r}")
    return paged_decode_attention_torch(q, k_cache, v_cache, block_tables, context_lens)
