"""FP8 row-wise quantization with a capped scale, and an FP8 linear (report §6.2, Figure 25).

The format: ``float8_e4m3fn`` has 1 sign, 4 exponent and 3 mantissa bits, no infinities, and spans ±448 with
normal numbers down to 2⁻⁶ and subnormals down to 2⁻⁹. Three mantissa bits mean a relative rounding error of at most
2⁻⁴ (6.25 %) for normal numbers. Like INT8, a tensor is scaled into that range first; unlike INT8, the grid is
logarithmic, so small values keep their relative precision — until they fall below 2⁻⁹ and underflow to 0.

What the report does (§6.2), and where it is here:
- **row-wise scales** (Figure 25): one scale per row of the weight (output channel) and per row of the activation
  (token): ``quantize_fp8_rowwise``. The matmul then rescales each output ``y[m, n]`` by ``1 / (s_x[m] · s_w[n])``,
  which ``torch._scaled_mm`` does in its epilogue on GPUs with FP8 tensor cores (compute capability ≥ 8.9).
- **dynamic** activation scales, computed for every token at run time (``Fp8Linear``).
- **an upper bound of 1200** on the dynamic scaling factor. A high-perplexity token (a date, say) can carry one huge
  activation; a plain absmax scale then maps that value to 448 and pushes the rest of its row below 2⁻⁹: they
  underflow to zero and decoding goes wrong. Meta's kernels (fbgemm's ``quantize_fp8_per_row(x, scale_ub)``, used by
  the reference Llama code with ``scale_ub = 1200``) cap the **row's absmax** used for scaling:
  ``scale = 448 / min(max|x|, 1200)``. So the multiplier never drops below 448/1200 ≈ 0.373 (the dequantization
  factor ``1/scale`` never exceeds 1200/448 ≈ 2.68), the rest of the row keeps its resolution, and the few entries
  above 1200 saturate at ±1200. The cap applies to activations; weights are quantized without one.

``fp8_matmul`` is the product of quantized operands: the GPU kernel, or an exact emulation (fp8 codes are exact in
fp32, and so are products of two of them; sums accumulate in fp32 as the tensor cores do) everywhere else.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from minillm.quant.int8 import absmax, check_quantizable

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0          # torch.finfo(torch.float8_e4m3fn).max
SCALE_UB = 1200.0        # the report's upper bound on the dynamic scaling factor (the row absmax it scales by)


def quantize_fp8_rowwise(x: torch.Tensor, scale_ub: float | None = SCALE_UB,
                         check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale per row (last dim). ``x (..., K)`` -> ``(q float8_e4m3fn (..., K), scale fp32 (..., 1))``.

    ``scale = 448 / min(max|row|, scale_ub)`` and ``q = clamp(x · scale, ±448)`` rounded to nearest e4m3, so
    ``x ≈ q / scale`` (the same convention as ``quantize_int8_absmax``). ``scale_ub=None`` removes the cap (what
    weights use). Rows of zeros get a finite scale and zero codes. ``check``: raise ``ValueError`` on NaN/inf.
    Report §6.2 (row-wise, scale bounded by 1200).
    """
    if scale_ub is not None and scale_ub <= 0:
        raise ValueError(f"scale_ub must be positive (the report uses 1200) or None for no cap, got {scale_ub}")
    check_quantizable(x, check)
    amax = absmax(x, dim=-1)                                              # (..., 1) fp32, >= EPS
    if scale_ub is not None:
        amax = amax.clamp(max=scale_ub)                                   # the cap: outliers above it saturate
    scale = FP8_MAX / amax                                                # (..., 1)
    # clamp first: casting a value beyond ±448 to e4m3fn gives NaN, not the largest finite value
    # x · scale is computed in fp32 (scale is fp32 and has x's number of dims, so type promotion picks fp32)
    q = (x * scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)               # (..., K)
    return q, scale


def dequantize_fp8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``q / scale`` in ``dtype``. ``q (..., K)`` fp8, ``scale (..., 1)``."""
    return (q.float() / scale).to(dtype)


def scaled_mm_supported(device: torch.device | str | None = None) -> bool:
    """True on CUDA GPUs with FP8 tensor cores (compute capability ≥ 8.9: Ada, Hopper and later) and a torch that
    has ``torch._scaled_mm``."""
    device = torch.device(device if device is not None else "cuda")
    if device.type != "cuda" or not torch.cuda.is_available() or not hasattr(torch, "_scaled_mm"):
        return False
    return _capability(device.index if device.index is not None else torch.cuda.current_device()) >= (8, 9)


@functools.lru_cache(maxsize=None)
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def _scaled_mm_rowwise(qa, inv_sa, qb, inv_sb, out_dtype, fast_accum):
    """``torch._scaled_mm`` with row-wise scales: ``a (M, K)`` row-major, ``b`` passed as ``(K, N)`` column-major
    (the transpose of our row-major ``(N, K)`` weight), ``scale_a (M, 1)``, ``scale_b (1, N)``, both fp32 — the
    dequantization factors, i.e. ``1/scale``. Older torch versions returned ``(out, amax)``."""
    out = torch._scaled_mm(qa, qb.t(), scale_a=inv_sa.contiguous(), scale_b=inv_sb.t().contiguous(),
                           out_dtype=out_dtype, use_fast_accum=fast_accum)
    return out[0] if isinstance(out, tuple) else out


def fp8_matmul(qa: torch.Tensor, sa: torch.Tensor, qb: torch.Tensor, sb: torch.Tensor,
               out_dtype: torch.dtype = torch.bfloat16, impl: str = "auto", fast_accum: bool = False) -> torch.Tensor:
    """``(qa / sa) @ (qb / sb)ᵀ`` from row-wise fp8 operands. ``qa (M, K)``, ``sa (M, 1)``, ``qb (N, K)``,
    ``sb (N, 1)`` -> ``(M, N)`` in ``out_dtype``.

    ``impl``: ``"kernel"`` (``torch._scaled_mm``; raises where it cannot run), ``"emulate"`` (fp32 matmul of the
    exact fp8 values, then the same per-row/per-column rescale) or ``"auto"`` (the kernel on GPUs that have it, for
    shapes it takes — K and N divisible by 16 — falling back to the emulation with a warning if the call fails).
    ``fast_accum``: the kernel's faster, less precise accumulation (ignored by the emulation).
    """
    if impl not in ("auto", "kernel", "emulate"):
        raise ValueError(f"impl must be 'auto', 'kernel' or 'emulate', got {impl!r}")
    inv_sa, inv_sb = 1.0 / sa.float(), 1.0 / sb.float()                 # (M, 1), (N, 1): dequantization factors
    if impl == "kernel":                                                  # no fallback (and easy for torch.compile)
        return _scaled_mm_rowwise(qa, inv_sa, qb, inv_sb, out_dtype, fast_accum)
    if impl == "auto" and scaled_mm_supported(qa.device) and qa.shape[1] % 16 == 0 and qb.shape[0] % 16 == 0:
        try:
            return _scaled_mm_rowwise(qa, inv_sa, qb, inv_sb, out_dtype, fast_accum)
        except (RuntimeError, TypeError) as err:
            _warn_once(f"torch._scaled_mm failed ({err}); using the FP8 emulation")
    acc = qa.float() @ qb.float().t()                                     # (M, N) fp32: exact products, fp32 sums
    return (acc * inv_sa * inv_sb.t()).to(out_dtype)                      # row m times 1/sa[m], column n times 1/sb[n]


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class Fp8Linear(nn.Module):
    """``y = x Wᵀ`` in FP8 with row-wise scales, the report's recipe (§6.2). ``(..., in) -> (..., out)``.

    The weight is quantized once (one scale per output row, no cap); each call quantizes the tokens of ``x`` row by
    row with the cap ``scale_ub`` and multiplies with ``fp8_matmul``. The output has ``x``'s dtype.
    ``quantize_input`` is the activation quantizer (swap in a ``torch.compile``-d one to fuse its kernels).
    """

    def __init__(self, weight_q: torch.Tensor, weight_scale: torch.Tensor, scale_ub: float | None = SCALE_UB,
                 impl: str = "auto", fast_accum: bool = False, check_activations: bool = True):
        super().__init__()
        self.out_features, self.in_features = weight_q.shape
        self.scale_ub, self.impl, self.fast_accum = scale_ub, impl, fast_accum
        self.check_activations = check_activations
        self.quantize_input = quantize_fp8_rowwise
        self.register_buffer("weight", weight_q)                          # (out, in) float8_e4m3fn
        self.register_buffer("weight_scale", weight_scale)                # (out, 1) fp32

    @classmethod
    def from_linear(cls, linear: nn.Linear, **kwargs) -> "Fp8Linear":
        """Quantize an ``nn.Linear`` (no bias): one scale per output row, no cap on weights."""
        if linear.bias is not None:
            raise ValueError("Fp8Linear supports linears without bias (Llama has none)")
        q, scale = quantize_fp8_rowwise(linear.weight.detach(), scale_ub=None)   # (out, in), (out, 1)
        return cls(q, scale, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype != FP8_DTYPE:
            raise RuntimeError("Fp8Linear.weight is no longer float8 (was the model cast with .to(dtype) after "
                               "quantizing?): quantize after moving the model to its device and dtype")
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])                                         # (M, in)
        qx, sx = self.quantize_input(x2, self.scale_ub, self.check_activations)  # (M, in) fp8, (M, 1)
        y = fp8_matmul(qx, sx, self.weight, self.weight_scale, x.dtype, self.impl, self.fast_accum)  # (M, out)
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale_ub={self.scale_ub}"


def reference_linear(x: torch.Tensor, weight: torch.Tensor, scale_ub: float | None = SCALE_UB) -> torch.Tensor:
    """What ``Fp8Linear`` computes, written the slow obvious way: quantize-dequantize both operands, then an fp32
    ``F.linear``. ``x (..., in)``, ``weight (out, in)`` -> ``(..., out)`` fp32 (tests compare against it)."""
    xd = dequantize_fp8(*quantize_fp8_rowwise(x, scale_ub))
    wd = dequantize_fp8(*quantize_fp8_rowwise(weight, None))
    return F.linear(xd, wd)
