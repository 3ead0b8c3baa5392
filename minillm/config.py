"""Model configuration for Llama-3-style decoders.

What is notable here:
- one validated dataclass describes every model in the book, from the 2-core ``tiny()`` model to ``llama3_405b()``;
- the three presets are the released Llama 3.1 configs (report §3.2, Table 3): model dimension, layers, heads,
  8 key/value heads (GQA), FFN size, a 128,256-token vocabulary and RoPE base frequency θ = 500,000;
- closed-form counts used throughout the book: parameters, training FLOPs per token, KV-cache bytes.

Shapes and names follow Meta's reference code: ``dim`` (model width), ``n_heads`` query heads of ``head_dim`` each,
``n_kv_heads`` key/value heads shared by ``n_heads // n_kv_heads`` query heads, ``ffn_dim`` hidden units of SwiGLU.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import torch


def check_positive_float(owner: str, name: str, value) -> float:
    """``value`` as a float, or a ``ValueError`` naming ``owner.name`` unless it is a finite number > 0 (a NaN passes
    ``value <= 0``, so it is tested for explicitly)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a finite positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1 long-context RoPE frequency scaling (applied to θ-based frequencies).

    Wavelengths longer than ``original_max_seq_len / low_freq_factor`` are divided by ``factor``; wavelengths shorter
    than ``original_max_seq_len / high_freq_factor`` are kept; the band in between is interpolated smoothly.
    The values are those of the released Llama 3.1 configs.
    """

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_seq_len: int = 8192

    def __post_init__(self) -> None:
        for name in ("factor", "low_freq_factor", "high_freq_factor"):
            object.__setattr__(self, name, check_positive_float("RopeScaling", name, getattr(self, name)))
        if not isinstance(self.original_max_seq_len, int) or isinstance(self.original_max_seq_len, bool) \
                or self.original_max_seq_len <= 0:
            raise ValueError(f"RopeScaling.original_max_seq_len must be a positive integer, "
                             f"got {self.original_max_seq_len!r}")
        if self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(
                f"RopeScaling.high_freq_factor ({self.high_freq_factor}) must be larger than "
                f"low_freq_factor ({self.low_freq_factor})"
            )


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a Llama 3 decoder (report §3.2, Table 3).

    ``head_dim`` defaults to ``dim // n_heads``. ``tie_embeddings`` shares the input embedding with the output head
    (Llama 3 does not; small models such as SmolLM2 do).
    """

    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8
    ffn_dim: int = 14336
    vocab_size: int = 128_256
    max_seq_len: int = 8192
    rope_theta: float = 500_000.0
    rope_scaling: RopeScaling | None = None
    norm_eps: float = 1e-5
    head_dim: int | None = None
    tie_embeddings: bool = False
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        for name in ("rope_theta", "norm_eps"):                              # RoPE's base θ, RMSNorm's ε
            object.__setattr__(self, name, check_positive_float("ModelConfig", name, getattr(self, name)))
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(
                f"ModelConfig.n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads}): "
                f"each key/value head serves a whole group of query heads"
            )
        if self.head_dim is None:
            if self.dim % self.n_heads != 0:
                raise ValueError(
                    f"ModelConfig.dim ({self.dim}) must be divisible by n_heads ({self.n_heads}), "
                    f"or set head_dim explicitly"
                )
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if not isinstance(self.head_dim, int) or self.head_dim <= 0:
            raise ValueError(f"ModelConfig.head_dim must be a positive integer, got {self.head_dim!r}")
        if self.head_dim % 2 != 0:
            raise ValueError(
                f"ModelConfig.head_dim ({self.head_dim}) must be even: RoPE rotates pairs of dimensions"
            )
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))

    # ----------------------------------------------------------------- presets
    @classmethod
    def tiny(cls, **overrides) -> "ModelConfig":
        """A model that trains in minutes on 2 CPU cores (≈3.6M parameters with an 8K vocabulary)."""
        base = dict(dim=256, n_layers=4, n_heads=8, n_kv_heads=2, ffn_dim=768, vocab_size=8192,
                    max_seq_len=512, rope_theta=10_000.0, name="tiny")
        return cls(**{**base, **overrides})

    @classmethod
    def llama3_8b(cls, **overrides) -> "ModelConfig":
        """Llama 3.1 8B: 32 layers, width 4,096, 32 query / 8 KV heads, FFN 14,336."""
        base = dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336, name="llama3-8b")
        return cls(**{**_LLAMA3_COMMON, **base, **overrides})

    @classmethod
    def llama3_70b(cls, **overrides) -> "ModelConfig":
        """Llama 3.1 70B: 80 layers, width 8,192, 64 query / 8 KV heads, FFN 28,672."""
        base = dict(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_dim=28672, name="llama3-70b")
        return cls(**{**_LLAMA3_COMMON, **base, **overrides})

    @classmethod
    def llama3_405b(cls, **overrides) -> "ModelConfig":
        """Llama 3.1 405B: 126 layers, width 16,384, 128 query / 8 KV heads, FFN 53,248."""
        base = dict(dim=16384, n_layers=126, n_heads=128, n_kv_heads=8, ffn_dim=53248, name="llama3-405b")
        return cls(**{**_LLAMA3_COMMON, **base, **overrides})

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        if "dim" in changes or "n_heads" in changes:
            changes.setdefault("head_dim", None)
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- counts
    @property
    def attention_type(self) -> str:
        """"MHA" (one KV head per query head), "MQA" (one KV head) or "GQA" (groups)."""
        if self.n_kv_heads == self.n_heads:
            return "MHA"
        return "MQA" if self.n_kv_heads == 1 else "GQA"

    def params_per_layer(self) -> int:
        """Weights of one transformer block: attention (q, k, v, o), SwiGLU FFN (w1, w2, w3) and two RMSNorms."""
        q_out = self.n_heads * self.head_dim
        kv_out = self.n_kv_heads * self.head_dim
        attention = self.dim * q_out + 2 * self.dim * kv_out + q_out * self.dim
        ffn = 3 * self.dim * self.ffn_dim
        return attention + ffn + 2 * self.dim

    def num_params(self, include_embedding: bool = True) -> int:
        """Total parameter count. ``include_embedding=False`` drops the input embedding table (no FLOPs)."""
        embedding = self.vocab_size * self.dim
        head = 0 if self.tie_embeddings else self.vocab_size * self.dim
        total = self.n_layers * self.params_per_layer() + self.dim + head  # + final norm
        if include_embedding or self.tie_embeddings:
            # a tied table is also the output head, so it always counts
            total += embedding
        return total

    def flops_per_token(self, seq_len: int, training: bool = True) -> float:
        """FLOPs to process one token in a sequence of ``seq_len`` tokens.

        Training (forward + backward) costs ``6 N + 12 L d T`` (PaLM, Chowdhery et al. 2022, App. B): ``N`` the weights
        that take part in a matmul (all but the embedding lookup), ``L`` layers, ``d = n_heads * head_dim``, ``T`` the
        sequence length; the second term is QKᵀ and attention·V, counted without the causal halving, as PaLM does.
        Inference (forward only) is one third of that.
        """
        if seq_len <= 0:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        n = self.num_params(include_embedding=False)
        attn = 12 * self.n_layers * self.n_heads * self.head_dim * seq_len
        total = 6 * n + attn
        return float(total if training else total / 3)

    def kv_cache_bytes(self, seq_len: int, batch_size: int = 1, dtype: torch.dtype = torch.bfloat16) -> int:
        """Bytes of a KV cache holding ``seq_len`` tokens for ``batch_size`` sequences.

        Per token and layer the cache keeps a key and a value vector for each KV head:
        ``2 * n_layers * n_kv_heads * head_dim * bytes_per_element``.
        """
        if seq_len < 0 or batch_size < 0:
            raise ValueError(f"seq_len and batch_size must be non-negative, got {seq_len}, {batch_size}")
        element = torch.empty((), dtype=dtype).element_size()
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * element * seq_len * batch_size


_LLAMA3_COMMON = dict(
    vocab_size=128_256,
    max_seq_len=131_072,
    rope_theta=500_000.0,
    rope_scaling=RopeScaling(),
    norm_eps=1e-5,
)
