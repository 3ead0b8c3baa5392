"""A pre-allocated key/value cache (report §6).

Generating token t+1 needs the keys and values of tokens 0..t at every layer. Without a cache each step recomputes
them for the whole prefix (quadratic work over a generation); with one, *prefill* runs the prompt once and stores its
keys and values, and each *decode* step computes them for the one new token only.

The cache is allocated once, ``(n_layers, B, n_kv_heads, max_seq_len, head_dim)`` for keys and the same for values,
so its memory is known up front (``ModelConfig.kv_cache_bytes``) and shapes never change:

- ``update(layer, k, v, start: int)`` writes positions ``start .. start+T`` and returns views of everything written so
  far (eager mode: attention runs over the filled part only);
- ``update(layer, k, v, start: Tensor)`` writes at the slots given by a tensor and returns the *full* buffers, so every
  decode step has identical shapes and can be captured by CUDA graphs / ``torch.compile`` (the caller masks the
  unfilled slots).
"""

from __future__ import annotations

import torch

from minillm.config import ModelConfig


class KVCache:
    """Keys and values of ``batch_size`` sequences of up to ``max_seq_len`` tokens, for every layer."""

    def __init__(self, cfg: ModelConfig, batch_size: int, max_seq_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        if batch_size <= 0 or max_seq_len <= 0:
            raise ValueError(f"KVCache batch_size and max_seq_len must be positive, got {batch_size}, {max_seq_len}")
        shape = (cfg.n_layers, batch_size, cfg.n_kv_heads, max_seq_len, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_seq_len = max_seq_len
        # per-layer views of the same memory, for the static path: torch.compile sees each as its own input and
        # updates it in place; indexing ``self.k[layer]`` inside a compiled step instead makes inductor copy the
        # layer's whole cache (and write it back) on every step, which made compiled decoding slower than eager
        self._k_layers, self._v_layers = self.k.unbind(0), self.v.unbind(0)

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v (B, Hkv, T, D)`` at positions ``start..start+T``; return the keys/values to attend over."""
        T = k.shape[2]
        k_all, v_all = self._k_layers[layer], self._v_layers[layer]  # (B, Hkv, max_seq_len, D)
        if isinstance(start, torch.Tensor):                 # static shapes: slots given as a tensor (T,)
            k_all.index_copy_(2, start, k)
            v_all.index_copy_(2, start, v)
            return k_all, v_all
        end = start + T
        if end > self.max_seq_len:
            raise ValueError(f"KV cache is full: writing positions {start}..{end} but max_seq_len is "
                             f"{self.max_seq_len}; allocate the cache with a larger max_seq_len")
        # narrow + copy_ is the write ``self.k[layer, :, :, start:end] = k`` in 2 operator calls instead of 5; on a
        # CPU a decode step is its weight reads plus dozens of such small calls a layer, each costing microseconds
        k_all.narrow(2, start, T).copy_(k)
        v_all.narrow(2, start, T).copy_(v)
        return k_all.narrow(2, 0, end), v_all.narrow(2, 0, end)  # (B, Hkv, end, D)
