"""Rotary position embeddings (RoPE; Su et al., 2021) with Llama 3's base θ = 500,000 (report §3.2) and the
Llama 3.1 long-context frequency scaling.

RoPE rotates each pair of channels of a query or key by an angle ``position × frequency``. The dot product of a query
at position m with a key at position n then depends only on ``m − n``: attention sees relative positions although each
vector was rotated by its absolute one. Frequencies are ``θ^(−2i/d)`` for ``i < d/2``; a larger θ gives longer
wavelengths, which the report chose to support long contexts.

Llama 3.1 stretched the context from 8K to 128K by rescaling the frequencies (factor 8; low/high frequency factors
1 and 4; original context 8,192): wavelengths shorter than 8192/4 tokens are kept, those longer than 8192/1 are
divided by 8 (slowed down), and the band in between is interpolated.

Channel layout: we rotate the first half of the head dimension against the second half (``rotate_half``), the
layout of Hugging Face checkpoints. Meta's original code rotates adjacent pairs (0,1), (2,3), ...; the two are the same
model up to a permutation of the rows of ``wq`` and ``wk`` (see ``minillm/model/load.py``).
"""

from __future__ import annotations

import math

import torch

from minillm.config import RopeScaling


def rope_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> torch.Tensor:
    """Inverse frequencies ``(head_dim // 2,)`` in fp32, with the Llama 3.1 scaling applied when given."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    if scaling is not None:
        inv_freq = apply_llama31_scaling(inv_freq, scaling)
    return inv_freq.float()


def apply_llama31_scaling(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    """Llama 3.1 frequency scaling (Meta's ``apply_scaling``): keep high frequencies, divide low ones by ``factor``."""
    low_freq_wavelen = s.original_max_seq_len / s.low_freq_factor    # 8192: longer waves get slowed down
    high_freq_wavelen = s.original_max_seq_len / s.high_freq_factor  # 2048: shorter waves are kept
    wavelen = 2 * math.pi / inv_freq
    smooth = (s.original_max_seq_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    interpolated = (1 - smooth) * inv_freq / s.factor + smooth * inv_freq
    out = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, interpolated)
    return torch.where(wavelen < high_freq_wavelen, inv_freq, out)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles for integer ``positions`` ``(B, T)`` -> ``cos, sin`` each ``(B, 1, T, head_dim)`` (broadcast over heads)."""
    angles = positions.float()[..., None] * inv_freq  # (B, T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)      # (B, T, head_dim): same angle for channel i and i + d/2
    return angles.cos().to(dtype)[:, None], angles.sin().to(dtype)[:, None]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys ``(B, H, T, head_dim)`` by the angles of their positions."""
    return x * cos + rotate_half(x) * sin


def sinusoidal_embedding(positions: torch.Tensor, dim: int, theta: float = 10_000.0) -> torch.Tensor:
    """The original Transformer's absolute encoding ``(T,) -> (T, dim)``, for comparison in the book."""
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = positions.float()[:, None] * inv_freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
