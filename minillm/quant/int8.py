"""INT8 absmax quantization and an INT8 linear layer (the report's §6.2 does the same with FP8).

Absmax quantization maps the largest magnitude of a group of numbers to 127 and everything else proportionally:

    scale = 127 / max|x|          q = round(x · scale) ∈ [-127, 127]          x ≈ q / scale

so each number moves by at most half a step, ``0.5 / scale``. One ``scale`` per tensor is the simplest choice; one per
row (``dim=-1``: per output channel of a weight, per token of an activation) keeps a single large value from
flattening every other row onto a few levels.

Two ways to use it in a matmul ``y = x Wᵀ`` (``W`` of shape ``(out, in)``):
- **weight-only**: store ``W`` as int8 + one scale per output row (half the bytes of bf16), multiply in the
  activation's dtype. Saves memory and bandwidth (decode), not FLOPs.
- **weight + dynamic activation**: quantize each token's row of ``x`` on the fly, multiply int8 × int8 into int32
  (exact), then rescale: ``y[m, n] = acc[m, n] / (s_x[m] · s_w[n])``. That uses the int8 tensor cores
  (``torch._int_mm`` on CUDA); elsewhere ``int8_matmul`` computes the same integers exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INT8_MAX = 127
# a row of zeros has max|x| = 0; clamping it keeps its scale finite and its codes 0 (fbgemm uses the same EPS)
ABSMAX_EPS = 1e-12


def check_finite(x: torch.Tensor, what: str = "input") -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or ±inf: one such value would poison the scale of its whole group."""
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{what} holds {bad} NaN/inf value(s) (shape {tuple(x.shape)}); quantization scales come from "
                         f"max|x| and would be NaN or 0: find where they arise (an fp16 overflow?) before quantizing")


def check_quantizable(x: torch.Tensor, check: bool = True, what: str = "input") -> None:
    """The one check of a tensor entering a quantizer: a non-empty floating-point tensor (``TypeError`` /
    ``ValueError`` otherwise: an integer tensor or an empty one would fail deep inside ``torch.linalg``), and, when
    ``check``, finite (``check_finite``, a host sync on GPUs)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor (fp32, bf16 or fp16 weights or activations), got "
                        f"{x.dtype}: token ids or already quantized codes cannot be quantized (cast with .float())")
    if x.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(x.shape)}): there is no max|x| to take a scale from")
    if check:
        check_finite(x, what)


def absmax(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """max|x| in fp32, over the whole tensor (a 0-d tensor) or along ``dim`` (kept with size 1), at least EPS.

    The ∞-norm is max|x| in one pass with no temporary copy; the max of bf16 values is exact in bf16."""
    a = torch.linalg.vector_norm(x.detach(), float("inf"), dim=dim, keepdim=dim is not None)
    return a.float().clamp(min=ABSMAX_EPS)


def quantize_int8_absmax(x: torch.Tensor, dim: int | None = None,
                         check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Absmax INT8 quantization. ``x`` any shape -> ``(q int8 like x, scale fp32)``.

    ``dim=None``: one scale for the tensor (0-d). ``dim=d``: one scale per slice along ``d`` — the absmax is taken
    over ``d``, so ``dim=-1`` on a ``(rows, cols)`` matrix gives ``scale`` of shape ``(rows, 1)``. ``x ≈ q / scale``.
    ``check``: raise ``ValueError`` on NaN/inf (a host sync on GPUs).

    A worked example:

    >>> x = torch.tensor([1.2, -0.5, -4.3, 1.2, -3.1, 0.8, 2.4, 5.4])
    >>> q, scale = quantize_int8_absmax(x)
    >>> round(scale.item(), 4), round(127 / 5.4, 4)
    (23.5185, 23.5185)
    >>> q.tolist()
    [28, -12, -101, 28, -73, 19, 56, 127]
    >>> dequantize_int8(q, scale)
    tensor([ 1.1906, -0.5102, -4.2945,  1.1906, -3.1039,  0.8079,  2.3811,  5.4000])
    """
    check_quantizable(x, check)
    scale = INT8_MAX / absmax(x, dim)                                     # () or x.shape with dim -> 1
    q = (x.float() * scale).round().clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``q / scale`` in ``dtype``; ``scale`` broadcasts against ``q`` (0-d, or size 1 along the quantized dim)."""
    return (q.float() / scale).to(dtype)


def _int_mm_ok(a: torch.Tensor, b: torch.Tensor) -> bool:
    """cuBLASLt's int8 GEMM (``torch._int_mm``) wants CUDA, more than 16 rows and inner/outer sizes divisible by 8."""
    M, K = a.shape
    return a.is_cuda and hasattr(torch, "_int_mm") and M > 16 and K % 8 == 0 and b.shape[0] % 8 == 0


def int8_matmul(a: torch.Tensor, b: torch.Tensor, impl: str = "auto") -> torch.Tensor:
    """Exact ``a @ bᵀ`` of int8 matrices: ``a (M, K)``, ``b (N, K)`` -> int32 ``(M, N)``.

    ``impl``: ``"kernel"`` (``torch._int_mm``, int8 tensor cores on CUDA), ``"emulate"`` (the same integers without
    int8 kernels: int32 matmul on CPU, fp64 on other devices — exact while ``K·127² < 2⁵³``) or ``"auto"``.
    int8 × int8 products summed in int32 cannot overflow for ``K < 2³¹ / 127² ≈ 133,000``.
    """
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise ValueError(f"int8_matmul needs int8 inputs, got {a.dtype} and {b.dtype}")
    if impl not in ("auto", "kernel", "emulate"):
        raise ValueError(f"impl must be 'auto', 'kernel' or 'emulate', got {impl!r}")
    if impl == "kernel" or (impl == "auto" and _int_mm_ok(a, b)):
        return torch._int_mm(a.contiguous(), b.t())                         # (M, K) @ (K, N) column-major -> int32
    if a.device.type == "cpu":
        return a.to(torch.int32) @ b.to(torch.int32).t()                    # (M, N) int32, exact
    return (a.double() @ b.double().t()).to(torch.int32)                    # exact in fp64 for K < 5·10¹¹


class Int8Linear(nn.Module):
    """``y = x Wᵀ`` with ``W`` stored as int8 + one fp32 scale per output row. ``(..., in) -> (..., out)``.

    ``activations="none"``: weight-only (the matmul runs in ``x``'s dtype on the int8 codes; the per-row scale
    commutes out of the sum). ``activations="dynamic"``: each token's row of ``x`` is quantized on the fly and the
    product is int8 × int8 -> int32 (``int8_matmul``). Seed §4.2; LLM.int8() (Dettmers et al., 2022) without its
    outlier split.
    """

    def __init__(self, weight_q: torch.Tensor, weight_scale: torch.Tensor, activations: str = "none",
                 impl: str = "auto", check_activations: bool = True):
        super().__init__()
        if activations not in ("none", "dynamic"):
            raise ValueError(f"activations must be 'none' (weight-only) or 'dynamic', got {activations!r}")
        self.out_features, self.in_features = weight_q.shape
        self.activations, self.impl, self.check_activations = activations, impl, check_activations
        self.register_buffer("weight", weight_q)                            # (out, in) int8
        self.register_buffer("weight_scale", weight_scale)                  # (out, 1) fp32

    @classmethod
    def from_linear(cls, linear: nn.Linear, activations: str = "none", **kwargs) -> "Int8Linear":
        """Quantize an ``nn.Linear`` (no bias) row by row."""
        if linear.bias is not None:
            raise ValueError("Int8Linear supports linears without bias (Llama has none)")
        q, scale = quantize_int8_absmax(linear.weight.detach(), dim=-1)     # (out, in), (out, 1)
        return cls(q, scale, activations, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype != torch.int8:
            raise RuntimeError("Int8Linear.weight is no longer int8 (was the model cast with .to(dtype) after "
                               "quantizing?): quantize after moving the model to its device and dtype")
        inv_scale = (1.0 / self.weight_scale).view(-1)                      # (out,)
        if self.activations == "none":
            return F.linear(x, self.weight.to(x.dtype)) * inv_scale.to(x.dtype)  # (..., out)
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])                                       # (M, in)
        qx, sx = quantize_int8_absmax(x2, dim=-1, check=self.check_activations)  # (M, in) int8, (M, 1)
        acc = int8_matmul(qx, self.weight, self.impl)                       # (M, out) int32
        y = acc.float() / sx * inv_scale                                    # (M, out) fp32
        return y.to(x.dtype).view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activations={self.activations}"
