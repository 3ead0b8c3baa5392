"""Data parallelism: every rank holds the whole model, takes its share of the batch, and averages gradients.

    rank r:  loss_r = mean loss over rows r·B/W … (r+1)·B/W      (B, T) -> (B/W, T)
             backward                                          → local gradients g_r
             g = (1/W) Σ_r g_r          (all-reduce)            → the gradient of the mean loss over the whole batch
             optimizer step                                    → identical weights on every rank

Two ways to do it, shown equal in ``tests/test_parallel_data.py``:

- ``allreduce_gradients``: by hand, after ``backward()``: flatten the gradients into buckets, all-reduce each bucket,
  divide by ``W``, copy back;
- ``torch.nn.parallel.DistributedDataParallel`` (``ddp``): the same sum, but started *during* the backward pass:
  autograd hooks fire as each gradient is ready, and a full bucket (25 MiB by default) is all-reduced while the
  backward pass carries on, so communication hides behind computation.

Memory: each rank stores all weights, gradients and optimizer states (16 bytes per parameter with bf16 weights and
fp32 Adam states), so data parallelism alone cannot fit a model larger than one device; ZeRO/FSDP shard those states
over the data-parallel ranks (the report uses FSDP, §3.3.2). Communication: ``2 (W − 1) / W`` × gradient bytes per
step and rank (ring all-reduce), independent of the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from minillm.parallel.communications import CommGroup


@dataclass(frozen=True)
class DataParallelConfig:
    """``bucket_mb``: gradients are all-reduced in buckets of about this many MiB (DDP's default is 25)."""

    bucket_mb: float = 25.0

    def __post_init__(self) -> None:
        if not self.bucket_mb > 0:
            raise ValueError(f"DataParallelConfig.bucket_mb must be positive (MiB per all-reduce), got "
                             f"{self.bucket_mb}")


def shard_batch(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rows ``rank·B/W … (rank+1)·B/W`` of ``x (B, ...)`` -> ``(B/W, ...)``."""
    if x.shape[0] % world:
        raise ValueError(f"batch of {x.shape[0]} rows does not split over {world} data-parallel ranks; use a "
                         f"batch size that is a multiple of {world}")
    per = x.shape[0] // world
    return x[rank * per:(rank + 1) * per]


def broadcast_parameters(model: nn.Module, dp: CommGroup, src: int = 0) -> None:
    """Copy group index ``src``'s weights to every rank (what DDP does when it wraps a model)."""
    if dp.size > 1:
        for p in model.parameters():
            dist.broadcast(p.data, dp.global_rank(src), group=dp.group)


def buckets(params: list[nn.Parameter], bucket_bytes: int) -> list[list[nn.Parameter]]:
    """Split ``params`` (in order) into consecutive groups of about ``bucket_bytes`` each."""
    out: list[list[nn.Parameter]] = [[]]
    size = 0
    for p in params:
        if out[-1] and size + p.numel() * p.element_size() > bucket_bytes:
            out.append([])
            size = 0
        out[-1].append(p)
        size += p.numel() * p.element_size()
    return out


@torch.no_grad()
def allreduce_gradients(model: nn.Module, dp: CommGroup, cfg: DataParallelConfig = DataParallelConfig()) -> int:
    """Replace every ``p.grad`` by its mean over the data-parallel ranks; returns the number of all-reduce calls.

    One flat buffer per bucket: a few large messages cost far less than one per tensor (each call pays a latency)."""
    params = [p for p in model.parameters() if p.grad is not None]
    calls = 0
    for bucket in buckets(params, int(cfg.bucket_mb * 2**20)):
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])       # (Σ numel,)
        dp.all_reduce(flat)
        flat /= dp.size
        calls += 1
        offset = 0
        for p in bucket:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n
    return calls


def ddp(model: nn.Module, dp: CommGroup | None = None, cfg: DataParallelConfig = DataParallelConfig()) -> nn.Module:
    """Wrap ``model`` in ``DistributedDataParallel`` (on its CUDA device if it has one)."""
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, bucket_cap_mb=cfg.bucket_mb,
                                               process_group=dp.group if dp is not None else None)
