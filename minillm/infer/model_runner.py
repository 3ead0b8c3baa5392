"""The model step of the engine: a paged KV pool and a forward pass over a flat, ragged batch (vLLM §4.3).

Continuous batching mixes sequences at different stages, so a step does not use ``(B, T)`` tensors: the new tokens
of all scheduled sequences are concatenated into one row of ``N`` tokens (no padding), each with its own position
and KV slot. Everything except attention is per token (embedding, norms, projections, SwiGLU) and runs on that row
as is. Attention is per sequence: decodes (one query each) are attended as one batch through their block tables,
prefill chunks one by one (causally, over their cached prefix plus themselves).

``paged_forward`` reuses the weights of a ``minillm.Llama`` (it walks ``model.layers`` and calls their norms and
projections) and its RoPE (``rope_cos_sin``/``apply_rope``); only attention and the cache differ from
``Llama.forward``. The pool is ``(n_layers, num_blocks + 1, block_size, n_kv_heads, head_dim)`` for keys and
values (the last block is scratch for padding rows). Pure-decode steps can instead replay CUDA graphs
(``decode_graphs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minillm.infer.paged_attention import (paged_decode_attention, paged_prefill_attention_torch, slots_for,
                                           write_kv)
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


class ModelRunner:
    """Owns the KV pool; turns scheduled sequences into a ``StepInput`` and runs the paged forward."""

    def __init__(self, model: Llama, num_blocks: int, block_size: int, attn_impl: str = "auto",
                 decode_graphs: str = "off", max_graph_batch: int = 128):
        cfg, p = model.cfg, model.tok_embeddings.weight
        self.model, self.block_size, self.attn_impl, self.device = model, block_size, attn_impl, p.device
        # the CPU's oneDNN linear builds a kernel per input shape: round the token count up to a multiple of 16
        # (padding rows, dropped before attention) so that steps reuse a few shapes instead of building new ones
        self.pad_multiple = 16 if p.device.type == "cpu" else 1
        # one block more than the block manager hands out: the scratch block of static decode's padding rows
        shape = (cfg.n_layers, num_blocks + 1, block_size, cfg.n_kv_heads, cfg.head_dim)
        # zeros, not empty: padding entries of block tables read some block, masked; it must not hold NaNs
        self.k_cache = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.v_cache = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.graphs = None
        if decode_graphs != "off":                   # "cuda": capture and replay; "static": the same step, eagerly
            from minillm.infer.decode_graphs import DecodeGraphs

            self.graphs = DecodeGraphs(model, self.k_cache, self.v_cache, num_blocks, max_graph_batch, attn_impl,
                                       capture=decode_graphs == "cuda")

    @staticmethod
    def bytes_per_block(model: Llama, block_size: int) -> int:
        cfg = model.cfg
        return 2 * cfg.n_layers * block_size * cfg.n_kv_heads * cfg.head_dim * model.tok_embeddings.weight.element_size()

    def copy_blocks(self, copies: list[tuple[int, int]]) -> None:
        """Copy-on-write: duplicate whole blocks (every layer) ``src -> dst``."""
        if copies:
            src = torch.tensor([s for s, _ in copies], device=self.device)
            dst = torch.tensor([d for _, d in copies], device=self.device)
            self.k_cache[:, dst] = self.k_cache[:, src]
            self.v_cache[:, dst] = self.v_cache[:, src]

    def prepare(self, work: list[tuple[list[int], int, int, list[int], bool]]) -> tuple[StepInput, list[int]]:
        """``work``: per sequence ``(token_ids, start, n, block_table, sample)``: compute tokens ``start .. start+n``.

        Returns the step input and the order in which the sampled sequences' logits come back."""
        bs, dev = self.block_size, self.device
        order = sorted(range(len(work)), key=lambda i: work[i][2] > 1)   # decodes (n == 1) first
        tokens, positions, slots, rows, sampled = [], [], [], [], []
        dec_tables, dec_lens, pf_lens, pf_ctx, pf_tables = [], [], [], [], []
        for i in order:
            ids, start, n, table, sample = work[i]
            tokens += ids[start:start + n]
            positions += range(start, start + n)
            slots += slots_for(table, start, start + n, bs)
            if sample:
                rows.append(len(tokens) - 1)
                sampled.append(i)
            if n == 1:
                dec_tables.append(table)
                dec_lens.append(start + 1)
            else:
                pf_lens.append(n)
                pf_ctx.append(start + n)
                pf_tables.append(torch.tensor(table, dtype=torch.int32, device=dev))
        block_tables = context_lens = None
        if dec_tables:
            width = max(len(t) for t in dec_tables)
            block_tables = torch.tensor([t + [0] * (width - len(t)) for t in dec_tables], dtype=torch.int32,
                                        device=dev)                                     # (num_decodes, M)
            context_lens = torch.tensor(dec_lens, dtype=torch.int32, device=dev)
        as_long = lambda x: torch.tensor(x, dtype=torch.long, device=dev)  # noqa: E731
        n_real, pad = len(tokens), -len(tokens) % self.pad_multiple
        step = StepInput(as_long(tokens + [0] * pad), as_long(positions + [0] * pad), as_long(slots), len(dec_tables),
                         block_tables, context_lens, max(dec_lens, default=0), pf_lens, pf_ctx, pf_tables,
                         as_long(rows), n_real)
        return step, sampled

    @torch.inference_mode()
    def forward(self, step: StepInput) -> torch.Tensor:
        """Logits ``(len(sample_rows), vocab)`` of the sampled rows: a pure-decode step through the decode graphs
        (when enabled and the batch fits), any other through the ragged ``paged_forward``."""
        if self.graphs is not None and self.graphs.fits(step):
            return self.graphs.run(step)
        return paged_forward(self.model, step, self.k_cache, self.v_cache, self.attn_impl)


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
