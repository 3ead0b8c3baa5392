"""RMSNorm (Zhang & Sennrich, 2019), the pre-normalisation of every Llama block (report §3.2).

``y = x / sqrt(mean(x²) + eps) * weight`` over the last dimension: LayerNorm without the mean subtraction and bias.
The statistic is computed in fp32 whatever the input dtype, as in Meta's and Hugging Face's Llama.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Plain reference: ``(..., dim) -> (..., dim)``."""
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (normed * weight.float()).to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm with a learned per-channel gain. ``(..., dim) -> (..., dim)``."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # PyTorch's fused kernel; tests check it against rms_norm_ref
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)
