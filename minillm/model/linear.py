"""The bias-free linear layer every projection of the model uses, and which CPU kernel runs it.

``Linear`` is ``nn.Linear(bias=False)`` with one difference: on the CPU, in fp32, when no gradient is needed
(generation, evaluation), it calls oneDNN's inner-product kernel — the kernel ``torch.compile``'s CPU backend emits
for linear layers — instead of the MKL ``sgemm`` that ``F.linear`` uses.

Why it matters: a decode step multiplies one activation row per sequence by every weight matrix, so its cost is
reading the weights from memory. On the 2-core AMD machine the book is tested on, ``F.linear`` reads skinny fp32
matrices at about 7 GB/s while oneDNN reaches about 14 GB/s (``benchmarks/decode.py`` measures the end-to-end effect;
``tests/test_linear.py`` checks the two agree). Training, other dtypes and other devices use ``F.linear`` unchanged.

Set ``MINILLM_CPU_LINEAR=aten`` before the import to force ``F.linear`` everywhere (for A/B comparisons). It is read
once, at import, rather than in each of a decode step's 121 projections.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_CHOICE = os.environ.get("MINILLM_CPU_LINEAR", "onednn")
if _CHOICE not in ("onednn", "aten"):
    raise ValueError(f"MINILLM_CPU_LINEAR must be 'onednn' (the default) or 'aten', got {_CHOICE!r}; unset it or "
                     f"pick one of the two")
FORCE_ATEN = _CHOICE == "aten"


MAX_ROWS = 64


def use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear(x, weight)`` takes the oneDNN path: CPU, fp32, no autograd, not under torch.compile, and at most
    ``MAX_ROWS`` rows (tokens × batch). Above that (a long prefill) the matmul is compute-bound, both kernels run at
    the same speed, and oneDNN would build — and cache — a new kernel for every new prompt length (milliseconds each)."""
    return (_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.numel() <= MAX_ROWS * x.shape[-1] and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling() and not FORCE_ATEN)


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x (..., in) @ weight (out, in)ᵀ -> (..., out)``."""
    if use_onednn(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")
    return F.linear(x, weight)


class Linear(nn.Linear):
    """``nn.Linear`` without bias whose forward is ``linear`` above."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight)
