"""Decoding with static shapes, so a GPU can replay each step as one CUDA graph (gpt-fast's recipe).

At batch 1 a decode step of an 8B model reads 16 GB of weights and does little else; on an H100 (3.35 TB/s) that
bounds it near 200 tokens/s. Eager PyTorch falls far short because the CPU cannot launch the step's ~600 small kernels
as fast as the GPU runs them. The fix is to make every step identical — same tensor shapes, same addresses — and
record it once as a CUDA graph (optionally after ``torch.compile`` fuses the small kernels), then replay it:

- the KV cache is allocated for ``max_seq_len`` positions and attention always runs over all of them, with a mask
  hiding the unfilled slots (``KVCache.update`` with a tensor ``start``);
- the token, its position, its cache slot and the mask live in fixed input buffers that are overwritten in place.

On the CPU (or with ``cuda_graph=False``) the same static step runs eagerly, which is how the tests check it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from minillm.model.llama import Llama


class StaticDecoder:
    """Greedy batch decoding of equal-length prompts with a static KV cache (and a CUDA graph on GPUs)."""

    def __init__(self, model: Llama, batch_size: int, max_seq_len: int, cuda_graph: bool | None = None,
                 compile: bool = False):
        self.model = model
        p = model.tok_embeddings.weight
        self.device, self.max_seq_len, self.batch_size = p.device, max_seq_len, batch_size
        self.cache = model.new_cache(batch_size, max_seq_len)
        self.cuda_graph = (self.device.type == "cuda") if cuda_graph is None else cuda_graph
        if self.cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs the model on a CUDA device")
        # fixed input/output buffers: a step reads and writes only these
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=self.device)          # (B, 1)
        self.position = torch.zeros(batch_size, 1, dtype=torch.long, device=self.device)       # (B, 1)
        self.slot = torch.zeros(1, dtype=torch.long, device=self.device)                       # (1,)
        self.mask = torch.zeros(batch_size, 1, 1, max_seq_len, dtype=torch.bool, device=self.device)
        self.next_token = torch.zeros(batch_size, dtype=torch.long, device=self.device)        # (B,)
        self._step = torch.compile(self._eager_step, fullgraph=True) if compile else self._eager_step
        self._graph: torch.cuda.CUDAGraph | None = None

    @torch.no_grad()  # not inference_mode: torch.compile cannot trace parameters under it
    def _eager_step(self) -> None:
        logits = self.model(self.token, positions=self.position, mask=self.mask, cache=self.cache, start=self.slot)
        self.next_token.copy_(logits[:, -1].argmax(dim=-1))

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):           # warm up (and let torch.compile finish) outside the graph
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._step()

    @torch.no_grad()  # not inference_mode: torch.compile cannot trace parameters under it
    def prefill(self, prompts: torch.Tensor) -> torch.Tensor:
        """Run equal-length prompts ``(B, P)`` through the model, filling cache slots ``0..P``; return the first
        greedy token ``(B,)``."""
        B, P = prompts.shape
        if B != self.batch_size or P >= self.max_seq_len:
            raise ValueError(f"prompts must be ({self.batch_size}, < {self.max_seq_len}), got {tuple(prompts.shape)}")
        logits = self.model(prompts, cache=self.cache, start=0, last_only=True)
        self.mask.zero_()
        self.mask[..., :P] = True
        self.prompt_len = P
        return logits[:, -1].argmax(dim=-1)

    @torch.no_grad()  # not inference_mode: torch.compile cannot trace parameters under it
    def decode(self, first: torch.Tensor, steps: int) -> torch.Tensor:
        """Feed ``first (B,)`` and greedily decode ``steps`` more tokens -> ``(B, steps)``."""
        P = self.prompt_len
        if P + steps > self.max_seq_len:
            raise ValueError(f"{P} prompt + {steps} new tokens exceed max_seq_len={self.max_seq_len}")
        out = torch.empty(self.batch_size, steps, dtype=torch.long, device=self.device)
        self.token.copy_(first[:, None])
        for i in range(steps):
            slot = P + i
            self.position.fill_(slot)
            self.slot.fill_(slot)
            self.mask[..., slot] = True
            if self.cuda_graph:
                if self._graph is None:
                    self._capture()          # capture writes slot P+i again with the same values: harmless
                self._graph.replay()
            else:
                self._step()
            out[:, i] = self.next_token
            self.token.copy_(self.next_token[:, None])
        return out


def static_greedy(model: Llama, prompts: Sequence[Sequence[int]] | torch.Tensor, max_new_tokens: int,
                  **kw) -> list[list[int]]:
    """Greedy generation of equal-length prompts through ``StaticDecoder`` (same tokens as ``generate``)."""
    tokens = torch.as_tensor(prompts, device=model.tok_embeddings.weight.device)
    dec = StaticDecoder(model, tokens.shape[0], tokens.shape[1] + max_new_tokens, **kw)
    first = dec.prefill(tokens)
    if max_new_tokens == 1:
        return first[:, None].tolist()
    rest = dec.decode(first, max_new_tokens - 1)
    return torch.cat([first[:, None], rest], dim=1).tolist()
