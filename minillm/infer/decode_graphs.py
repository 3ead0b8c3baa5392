"""CUDA graphs for the engine's decode steps: one graph per padded batch size (vLLM's and nano-vllm's recipe).

Once the prompts are in, most engine steps are pure decode: one token for each running sequence. On a GPU such a
step of an 8B model launches ~700 small kernels (per layer: norms, projections, RoPE, the KV write, attention,
SwiGLU), and eager PyTorch spends more CPU time launching them than the GPU spends running them at small batch.
A CUDA graph records the launches once and replays them with a single call. It replays fixed shapes at fixed
addresses, so a decode step is made static:

- the batch is padded up to the next captured size (1, 2, 4, 8, then multiples of 16 up to ``max_batch``);
- tokens, positions, KV slots, context lengths and the block table ``(size, max_blocks)`` live in buffers that a step
  overwrites in place; the table is as wide as ``max_seq_len`` needs, so the attention kernel's grid (sequences ×
  KV heads × context splits) is fixed; each sequence still reads only its ``context_len`` tokens;
- padding rows decode token 0 at position 0 into one **scratch block** the block manager never hands out (the pool
  has one block more than it manages) and attend to that slot alone: finite values, thrown away, never touching a
  real sequence's cache.

Prefill steps and steps that mix prefill chunks with decodes keep the ragged path (``paged_forward.paged_forward``).
``capture=False`` runs exactly the padded static step eagerly, on any device: that is how the CPU tests check the
padding and the scratch block; on a GPU, ``tests/test_infer_engine.py`` checks that replayed graphs give
``minillm.generate``'s tokens.
"""

from __future__ import annotations

import torch

from minillm.infer.paged_forward import StepInput, paged_forward
from minillm.model.llama import Llama


def graph_sizes(max_batch: int) -> list[int]:
    """Captured batch sizes: 1, 2, 4, 8, then multiples of 16, and ``max_batch`` itself."""
    sizes = [s for s in (1, 2, 4, 8) if s < max_batch] + list(range(16, max_batch, 16))
    return sizes + [max_batch]


class DecodeGraphs:
    """Static decode steps over a runner's pool: ``fits(step)`` says whether a step can take them, ``run(step)``
    returns its logits ``(len(step.sample_rows), vocab)``. Graphs are captured lazily, one per size, sharing one
    memory pool."""

    def __init__(self, model: Llama, k_cache: torch.Tensor, v_cache: torch.Tensor, scratch_block: int,
                 max_batch: int, attn_impl: str = "auto", capture: bool = True):
        device = k_cache.device
        if capture and device.type != "cuda":
            raise ValueError(f"capturing CUDA graphs (decode_graphs='cuda') needs the model on a CUDA device, not "
                             f"{device}; use 'static' to run the same padded step eagerly, or 'off'")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"DecodeGraphs.max_batch must be a positive int, got {max_batch!r}")
        self.model, self.k_cache, self.v_cache, self.attn_impl = model, k_cache, v_cache, attn_impl
        self.capture, self.sizes, self.max_batch = capture, graph_sizes(max_batch), max_batch
        bs = k_cache.shape[2]
        width = -(-model.cfg.max_seq_len // bs)                                   # blocks of the longest sequence
        self.scratch_block, self.scratch_slot = scratch_block, scratch_block * bs
        long = dict(dtype=torch.long, device=device)
        self.tokens = torch.zeros(max_batch, **long)                              # (max_batch,)
        self.positions = torch.zeros(max_batch, **long)
        self.slots = torch.full((max_batch,), self.scratch_slot, **long)
        self.context_lens = torch.ones(max_batch, dtype=torch.int32, device=device)
        self.block_tables = torch.full((max_batch, width), scratch_block, dtype=torch.int32, device=device)
        self.steps = {s: StepInput(self.tokens[:s], self.positions[:s], self.slots[:s], s, self.block_tables[:s],
                                   self.context_lens[:s], width * bs, [], [], [], torch.arange(s, device=device), s)
                      for s in self.sizes}                                       # views: they see every update
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.pool = None
        self.num_runs = 0

    def fits(self, step) -> bool:
        """Pure decode (every scheduled sequence computes one token) and no more sequences than ``max_batch``."""
        return step.num_decodes == step.num_tokens and 0 < step.num_decodes <= self.max_batch

    def _forward(self, size: int) -> torch.Tensor:
        return paged_forward(self.model, self.steps[size], self.k_cache, self.v_cache, self.attn_impl)

    @torch.inference_mode()
    def _capture(self, size: int) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):            # warm up outside the graph (Triton compiles its kernel for these shapes)
                self._forward(size)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.outputs[size] = self._forward(size)                             # (size, vocab), graph-owned
        self.pool = self.pool or graph.pool()
        self.graphs[size] = graph

    @torch.inference_mode()
    def capture_all(self) -> None:
        """Capture every size now, largest first (as vLLM does at start-up), instead of on first use."""
        if not self.capture:
            raise ValueError("capture_all needs DecodeGraphs(capture=True)")
        for size in reversed(self.sizes):
            if size not in self.graphs:
                self._capture(size)
        torch.cuda.synchronize()

    @torch.inference_mode()
    def run(self, step) -> torch.Tensor:
        """Copy ``step`` (a pure-decode ``StepInput``) into the buffers, pad, run; logits of its sampled rows."""
        B = step.num_decodes
        size = next(s for s in self.sizes if s >= B)
        width = step.block_tables.shape[1]
        self.tokens[:B].copy_(step.tokens[:B])
        self.positions[:B].copy_(step.positions[:B])
        self.slots[:B].copy_(step.slots)
        self.context_lens[:B].copy_(step.context_lens)
        self.block_tables[:B, :width].copy_(step.block_tables)   # columns past ``width``: stale, beyond every context
        if size > B:                                              # padding rows: token 0 at position 0, scratch slot
            self.tokens[B:size].zero_()
            self.positions[B:size].zero_()
            self.slots[B:size].fill_(self.scratch_slot)
            self.context_lens[B:size].fill_(1)
            self.block_tables[B:size, 0].fill_(self.scratch_block)
        if self.capture:
            if size not in self.graphs:
                self._capture(size)
            self.graphs[size].replay()
            logits = self.outputs[size]
        else:
            logits = self._forward(size)
        self.num_runs += 1
        return logits.index_select(0, step.sample_rows)           # (sampled, vocab): a copy, safe from the next replay
