"""The paged forward pass: ``Llama.forward`` over a flat, ragged batch whose keys and values live in KV blocks
(vLLM §4.3).

Continuous batching mixes sequences at different stages, so a step does not use ``(B, T)`` tensors: the new tokens
of all scheduled sequences are concatenated into one row of ``N`` tokens (no padding), each with its own position
and KV slot (``StepInput``). Everything except attention is per token (embedding, norms, projections, SwiGLU) and
runs on that row as is. Attention is per sequence: decodes (one query each) are attended as one batch through their
block tables, prefill chunks one by one (causally, over their cached prefix plus themselves).

``paged_forward`` reuses the weights of a ``minillm.Llama`` (it walks ``model.layers`` and calls their norms and
projections) and its RoPE (``rope_cos_sin``/``apply_rope``); only attention and the cache differ from
``Llama.forward``. Both the eager step (``model_runner.py``) and the CUDA-graph step (``decode_graphs.py``) run it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minillm.infer.paged_attention import paged_decode_attention, paged_prefill_attention_torch, write_kv
from minillm.model.llama import Llama
from minillm.model.rope import apply_rope, rope_cos_sin


@dataclass
class StepInput:
    """One step's flat batch: ``tokens, positions, slots (N,)``; the first ``num_decodes`` sequences have one token
    each (their ``block_tables (num_decodes, M)`` and ``context_lens``), the others are prefill chunks given by
    ``prefill_lens`` (tokens), ``prefill_contexts`` and ``prefill_tables``; logits are computed for ``sample_rows``."""

    tokens: torch.Tensor
    positions: torch.Tensor
    slots: torch.Tensor
    num_decodes: int
    block_tables: torch.Tensor | None
    context_lens: torch.Tensor | None
    max_context: int
    prefill_lens: list[int]
    prefill_contexts: list[int]
    prefill_tables: list[torch.Tensor]
    sample_rows: torch.Tensor
    num_tokens: int            # real tokens; ``tokens`` may carry padding rows after them (see ``pad_multiple``)



def paged_attention_step(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, step: StepInput,
                         impl: str = "auto") -> torch.Tensor:
    """Attention of the flat batch ``q (N, H, D)`` through one layer's pool -> ``(N, H, D)``."""
    nd = step.num_decodes
    outs = []
    if nd:
        outs.append(paged_decode_attention(q[:nd], k_cache, v_cache, step.block_tables, step.context_lens, impl,
                                           max_context=step.max_context))
    start = nd
    for n, ctx, table in zip(step.prefill_lens, step.prefill_contexts, step.prefill_tables):
        outs.append(paged_prefill_attention_torch(q[start:start + n], k_cache, v_cache, table, ctx))
        start += n
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def paged_forward(model: Llama, step: StepInput, k_cache: torch.Tensor, v_cache: torch.Tensor,
                  attn_impl: str = "auto") -> torch.Tensor:
    """``Llama.forward`` over a flat ragged batch with a paged cache. Pools ``(L, num_blocks, bs, Hkv, D)`` ->
    logits ``(len(step.sample_rows), vocab)``."""
    N, n = step.tokens.shape[0], step.num_tokens                             # padded and real token counts
    h = model.tok_embeddings(step.tokens)                                    # (N, dim)
    cos, sin = rope_cos_sin(step.positions[None], model.inv_freq, h.dtype)   # (1, 1, N, head_dim)
    for i, layer in enumerate(model.layers):
        attn = layer.attention
        H, Hkv, D = attn.n_heads, attn.n_kv_heads, attn.head_dim
        q, k, v = attn.wqkv(layer.attention_norm(h)).split([attn.q_size, attn.kv_size, attn.kv_size], dim=-1)
        q = apply_rope(q.view(N, H, D).transpose(0, 1)[None], cos, sin)[0].transpose(0, 1)       # (N, H, D)
        k = apply_rope(k.view(N, Hkv, D).transpose(0, 1)[None], cos, sin)[0].transpose(0, 1)     # (N, Hkv, D)
        write_kv(k_cache[i], v_cache[i], k[:n].contiguous(), v.reshape(N, Hkv, D)[:n], step.slots)
        out = paged_attention_step(q[:n].contiguous(), k_cache[i], v_cache[i], step, attn_impl)    # (n, H, D)
        if n < N:
            out = torch.cat([out, out.new_zeros(N - n, H, D)])                                     # (N, H, D)
        h = h + attn.wo(out.reshape(N, H * D))
        h = h + layer.feed_forward(layer.ffn_norm(h))
    return model.output(model.norm(h[step.sample_rows]))                   # (rows, vocab)
