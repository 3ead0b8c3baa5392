"""The model step of the engine: the paged KV pool, a step's flat ragged batch, and its forward pass (vLLM §4.3).

``ModelRunner`` owns the pool ``(n_layers, num_blocks + 1, block_size, n_kv_heads, head_dim)`` for keys and values
(the last block is scratch for padding rows), turns the scheduled sequences into a ``StepInput`` (tokens, positions,
KV slots, block tables) and runs it: through ``paged_forward`` (``paged_forward.py``: ``Llama.forward`` over a
ragged batch, attention through the blocks), or, for pure-decode steps, by replaying CUDA graphs
(``decode_graphs.py``).
"""

from __future__ import annotations

import torch

from minillm.infer.decode_graphs import DecodeGraphs
from minillm.infer.paged_attention import slots_for
from minillm.infer.paged_forward import StepInput, paged_attention_step, paged_forward  # noqa: F401 (re-exported)
from minillm.model.llama import Llama


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
