"""The communication every parallelism of this package needs, in one place, with a log of the bytes it moves.

- ``CommGroup``: the ranks that cooperate (a tensor-parallel group, a pipeline, a data-parallel group), with a
  ``CommLog`` that counts what each operation moved; a group of size 1 communicates nothing.
- ``copy_to_tp`` and ``reduce_from_tp``: the two conjugate operators of Megatron-LM (Shoeybi et al., 2019, §3,
  Fig. 3), called ``f`` and ``g`` in the paper:

      f: forward = identity,   backward = all-reduce (sum) of the gradient
      g: forward = all-reduce,  backward = identity

  ``f`` sits where a replicated activation ``X`` enters column-parallel layers: every rank multiplies the whole ``X``,
  so ∂L/∂X is the sum of every rank's contribution. ``g`` sits after row-parallel layers, whose partial outputs add
  up to the layer's output. One transformer block has one ``f``/``g`` pair around attention and one around the
  FFN: 2 all-reduces of ``(B, T, dim)`` forward and 2 backward.
- ``send``/``recv``: point-to-point transfers between neighbouring pipeline stages; a ``recv`` that times out
  (``init_process_group(timeout=...)``) raises an error that names the peer and what was awaited.

Bytes are counted as payload (``numel × element size``); a ring all-reduce makes each rank send and receive
``2 (W − 1) / W`` times the payload (``CommLog.ring_traffic``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


class CommLog:
    """What a group moved: ``(op, bytes)`` per call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def add(self, op: str, tensor: torch.Tensor) -> None:
        self.calls.append((op, tensor.numel() * tensor.element_size()))

    def bytes(self, op: str | None = None) -> int:
        """Payload bytes of all calls (of ``op`` only, if given)."""
        return sum(b for o, b in self.calls if op is None or o == op)

    def counts(self) -> dict[str, int]:
        """Number of calls per op, e.g. ``{"all_reduce": 8}``."""
        return dict(Counter(o for o, _ in self.calls))

    def clear(self) -> None:
        self.calls.clear()

    @staticmethod
    def ring_traffic(payload_bytes: int, world: int) -> float:
        """Bytes each rank sends (and receives) in a ring all-reduce of ``payload_bytes``: ``2 (W − 1) / W × payload``
        (a reduce-scatter then an all-gather, each moving ``(W − 1) / W`` of the payload)."""
        return 2 * (world - 1) / world * payload_bytes


@dataclass
class CommGroup:
    """Ranks ``ranks`` (global ranks, in group order) of a process group; ``rank`` is this process's index in it."""

    rank: int
    size: int
    group: dist.ProcessGroup | None = None       # None: the default (world) group
    ranks: tuple[int, ...] | None = None         # global rank of each group index (default 0..size-1)
    log: CommLog = field(default_factory=CommLog)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"CommGroup.size must be >= 1, got {self.size}")
        if not 0 <= self.rank < self.size:
            raise ValueError(f"CommGroup.rank must be in [0, size={self.size}), got {self.rank}")
        if self.ranks is None:
            self.ranks = tuple(range(self.size))
        if len(self.ranks) != self.size:
            raise ValueError(f"CommGroup.ranks lists {len(self.ranks)} ranks but size is {self.size}")

    @classmethod
    def world(cls) -> "CommGroup":
        """All processes of the initialised default group (or a group of one without ``torch.distributed``)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls(0, 1)

    def global_rank(self, index: int) -> int:
        return self.ranks[index]

    # -------------------------------------------------------------- collectives
    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the group, in place; returns it."""
        if self.size > 1:
            self.log.add("all_reduce", tensor)
            dist.all_reduce(tensor, group=self.group)
        return tensor

    # -------------------------------------------------------------- point to point
    def send(self, tensor: torch.Tensor, to: int) -> "Pending":
        """Start sending ``tensor`` to group index ``to`` and return at once; ``wait()`` on the result before relying
        on the transfer being done (the handle keeps the buffer alive until then)."""
        buffer = tensor.detach().contiguous()
        self.log.add("send", buffer)
        return Pending(dist.isend(buffer, self.global_rank(to), group=self.group), buffer)

    def recv(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str, frm: int,
             what: str = "a tensor") -> torch.Tensor:
        """Receive a ``shape`` tensor from group index ``frm``; a timeout or a dead peer raises ``RuntimeError``
        saying what this rank was waiting for and from whom."""
        buffer = torch.empty(shape, dtype=dtype, device=device)
        try:
            dist.recv(buffer, self.global_rank(frm), group=self.group)
        except RuntimeError as err:
            raise RuntimeError(f"rank {self.global_rank(self.rank)} gave up waiting for {what} from rank "
                               f"{self.global_rank(frm)} (stalled or dead?): {err}") from err
        self.log.add("recv", buffer)
        return buffer


@dataclass
class Pending:
    """An asynchronous send in flight and the buffer it reads."""

    work: dist.Work
    buffer: torch.Tensor

    def wait(self) -> None:
        self.work.wait()


class _CopyToTensorParallel(torch.autograd.Function):
    """Megatron's ``f``: identity forward, all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tp: CommGroup) -> torch.Tensor:
        ctx.tp = tp
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.tp.all_reduce(grad.contiguous().clone()), None


class _ReduceFromTensorParallel(torch.autograd.Function):
    """Megatron's ``g``: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tp: CommGroup) -> torch.Tensor:
        return tp.all_reduce(x.contiguous().clone())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def copy_to_tp(x: torch.Tensor, tp: CommGroup) -> torch.Tensor:
    """``f``: ``x (..., d)`` unchanged forward; its gradient is summed over the tensor-parallel group backward."""
    return _CopyToTensorParallel.apply(x, tp)


def reduce_from_tp(x: torch.Tensor, tp: CommGroup) -> torch.Tensor:
    """``g``: the sum of every rank's partial ``x (..., d)`` forward; the gradient passes through unchanged backward."""
    return _ReduceFromTensorParallel.apply(x, tp)
