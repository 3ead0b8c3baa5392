"""Tensor parallelism (Megatron-LM, Shoeybi et al., 2019, §3): every weight matrix of a block split over ``W`` ranks.

A linear layer ``Y = X Wᵀ`` (weight ``(out, in)``) can be split two ways:

- **column-parallel** (``ColumnParallelLinear``): rank ``r`` holds rows ``r·out/W …`` of the weight and computes
  its slice of the output features, ``Y_r = X W_rᵀ  (B, T, out/W)``, from the whole input;
- **row-parallel** (``RowParallelLinear``): rank ``r`` holds columns ``r·in/W …`` and multiplies its slice of the
  input features, ``X_r W_rᵀ  (B, T, out)``; the full output is the sum over ranks (an all-reduce).

Megatron pairs them so that a block needs no communication in the middle: column-parallel first (each rank keeps
its share of attention heads or FFN hidden units, and the nonlinearity acts on them locally), row-parallel second.

    attention:  x ─f─► wqkv (column: my H/W query heads, my Hkv/W KV heads) ─► attention ─► wo (row) ─g─► + x
    FFN:        x ─f─► w13  (column: my ffn/W gate and up units) ─► silu(gate)·up ─► w2 (row) ─g─► + x

``f``/``g`` are the operators of ``communications.py``. With grouped-query attention the KV heads are split too:
query head ``h`` reads KV head ``h // (H / Hkv)``, so giving rank ``r`` query heads ``r·H/W …`` and KV heads
``r·Hkv/W …`` keeps every query head with its KV head. Llama 3 405B runs TP = 8 inside a node (report §3.3.2,
§6.1), one of its 8 KV heads per GPU.

Everything else (embedding, RMSNorms, output head) stays replicated: their inputs' gradients are already summed by
``f``, so their gradients come out identical on every rank without any extra communication.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from minillm.config import ModelConfig
from minillm.model.attention import Attention
from minillm.model.linear import linear
from minillm.model.llama import FeedForward, Llama
from minillm.parallel.communications import CommGroup, copy_to_tp, reduce_from_tp


@dataclass(frozen=True)
class TensorParallelConfig:
    """``size`` ranks share every block's weights."""

    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"TensorParallelConfig.size must be a positive integer, got {self.size!r}")

    def check(self, cfg: ModelConfig) -> None:
        """Raise ``ValueError`` unless heads, KV heads and FFN units split evenly over ``size`` ranks."""
        for name in ("n_heads", "n_kv_heads", "ffn_dim"):
            value = getattr(cfg, name)
            if value % self.size:
                raise ValueError(f"ModelConfig.{name} ({value}) must be divisible by the tensor-parallel size "
                                 f"({self.size}): each rank takes {name}/size of them; choose a size that divides "
                                 f"{value}")


def split_rows(weight: torch.Tensor, parts: list[int], rank: int, size: int) -> torch.Tensor:
    """Rows of a (possibly fused) weight ``(sum(parts), in)`` for column-parallel rank ``rank``: each fused part is
    split into ``size`` equal chunks and the rank's chunks are concatenated -> ``(sum(parts) / size, in)``."""
    chunks = weight.split(parts, dim=0)                               # e.g. [q (H·D, in), k (Hkv·D, in), v]
    return torch.cat([c.chunk(size, dim=0)[rank] for c in chunks], dim=0)


def split_columns(weight: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """Columns of ``weight (out, in)`` for row-parallel rank ``rank`` -> ``(out, in / size)``."""
    return weight.chunk(size, dim=1)[rank]


class ColumnParallelLinear(nn.Module):
    """``x (..., in)`` replicated -> ``(..., out_local)``: this rank's output features. ``f`` on the way in."""

    def __init__(self, weight: torch.Tensor, tp: CommGroup):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())           # (out_local, in)
        self.tp = tp

    @classmethod
    def from_full(cls, weight: torch.Tensor, tp: CommGroup, parts: list[int] | None = None) -> "ColumnParallelLinear":
        """Shard a full weight ``(out, in)``; ``parts`` lists the sizes of fused matrices stacked in it."""
        return cls(split_rows(weight, parts or [weight.shape[0]], tp.rank, tp.size), tp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(copy_to_tp(x, self.tp), self.weight)           # (..., out_local)


class RowParallelLinear(nn.Module):
    """``x (..., in_local)``, this rank's input features -> ``(..., out)`` summed over ranks. ``g`` on the way out."""

    def __init__(self, weight: torch.Tensor, tp: CommGroup):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())           # (out, in_local)
        self.tp = tp

    @classmethod
    def from_full(cls, weight: torch.Tensor, tp: CommGroup) -> "RowParallelLinear":
        return cls(split_columns(weight, tp.rank, tp.size), tp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reduce_from_tp(linear(x, self.weight), self.tp)       # (..., out): partial sums added up


class TensorParallelAttention(Attention):
    """This rank's ``H/W`` query heads and ``Hkv/W`` KV heads of an ``Attention``. ``(B, T, dim) -> (B, T, dim)``.

    The forward pass is ``Attention.forward`` unchanged: with the local head counts and the parallel projections
    it computes this rank's heads, and ``wo``'s all-reduce adds every rank's heads into the full output.
    A ``KVCache`` passed to it must hold ``Hkv/W`` heads."""

    def __init__(self, attn: Attention, tp: CommGroup):
        nn.Module.__init__(self)
        if attn.n_heads % tp.size or attn.n_kv_heads % tp.size:
            raise ValueError(f"n_heads ({attn.n_heads}) and n_kv_heads ({attn.n_kv_heads}) must be divisible by the "
                             f"tensor-parallel size ({tp.size})")
        self.n_heads, self.n_kv_heads = attn.n_heads // tp.size, attn.n_kv_heads // tp.size
        self.head_dim = attn.head_dim
        self.q_size, self.kv_size = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        self.wqkv = ColumnParallelLinear.from_full(attn.wqkv.weight, tp, [attn.q_size, attn.kv_size, attn.kv_size])
        self.wo = RowParallelLinear.from_full(attn.wo.weight, tp)
        self.attend = attn.attend


class TensorParallelFeedForward(FeedForward):
    """This rank's ``ffn_dim/W`` SwiGLU units. ``(B, T, dim) -> (B, T, dim)``; forward is ``FeedForward.forward``."""

    def __init__(self, ffn: FeedForward, tp: CommGroup):
        nn.Module.__init__(self)
        if ffn.ffn_dim % tp.size:
            raise ValueError(f"ffn_dim ({ffn.ffn_dim}) must be divisible by the tensor-parallel size ({tp.size})")
        self.ffn_dim = ffn.ffn_dim // tp.size
        self.w13 = ColumnParallelLinear.from_full(ffn.w13.weight, tp, [ffn.ffn_dim, ffn.ffn_dim])  # [gate; up]
        self.w2 = RowParallelLinear.from_full(ffn.w2.weight, tp)


def shard_llama(model: Llama, tp: CommGroup) -> Llama:
    """A copy of ``model`` whose blocks hold only this rank's share (``TensorParallelAttention`` and
    ``TensorParallelFeedForward``); embedding, norms and output head are replicated. Call it on every rank of
    ``tp`` with the same ``model``; ``Llama.forward`` is unchanged: ``tokens (B, T) -> logits (B, T, vocab)``.

    (A real system builds each shard directly, never the whole model; at our size copying is simpler.)"""
    TensorParallelConfig(tp.size).check(model.cfg)
    sharded = copy.deepcopy(model)
    for block in sharded.layers:
        block.attention = TensorParallelAttention(block.attention, tp)
        block.feed_forward = TensorParallelFeedForward(block.feed_forward, tp)
    return sharded


def tp_allreduce_bytes(cfg: ModelConfig, tokens: int, dtype: torch.dtype = torch.float32,
                       backward: bool = True) -> int:
    """Payload bytes all-reduced per rank for ``tokens`` tokens through the ``n_layers`` blocks of a tensor-parallel
    model: 2 all-reduces of ``(tokens, dim)`` per block forward (``g`` after attention and after the FFN), 2 more
    backward (``f``'s gradient). Independent of the TP size; ring traffic is ``2 (W − 1) / W`` of it."""
    element = torch.empty((), dtype=dtype).element_size()
    per_pass = 2 * cfg.n_layers * tokens * cfg.dim * element
    return per_pass * (2 if backward else 1)
