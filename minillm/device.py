"""Where code runs and how much work it does.

Two decisions every chapter makes in its first cell:
- ``pick_device()``: CUDA, then Apple's MPS, then the CPU, with the widest fast dtype the device supports
  (bf16 on GPUs that have it; fp32 on the CPU, where bf16 matmuls are slower and less accurate);
- ``RunMode``: how big the experiments are. ``fast`` is what CI and ``make test`` run (the whole book in minutes on 2 CPU
  cores), ``book`` is what ``make book`` renders, ``full`` is the longer setting (``FULL=1 make book``) whose results
  the chapters quote. The mode is read from the environment once, in the notebook's first cell, and passed down.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Mapping, TypeVar

import numpy as np
import torch

T = TypeVar("T")
MODES = ("fast", "book", "full")


@dataclass(frozen=True)
class DeviceChoice:
    """A device and the dtype to compute in on it."""

    device: torch.device
    dtype: torch.dtype

    def __str__(self) -> str:
        return f"{self.device.type} ({str(self.dtype).removeprefix('torch.')})"


def pick_device(prefer: str | None = None) -> DeviceChoice:
    """Choose cuda > mps > cpu (or ``prefer``) and a compute dtype: bf16 where the hardware supports it, else fp32."""
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"prefer={prefer!r} but CUDA is not available; pass prefer=None to pick automatically")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    elif device.type == "mps":
        dtype = torch.float16
    else:
        dtype = torch.float32
    return DeviceChoice(device, dtype)


@dataclass(frozen=True)
class RunMode:
    """The size of a run: ``fast`` (CI), ``book`` (the rendered book) or ``full`` (the long experiments)."""

    name: str = "book"

    def __post_init__(self) -> None:
        if self.name not in MODES:
            raise ValueError(f"RunMode.name must be one of {MODES}, got {self.name!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RunMode":
        """Read ``MINILLM_MODE`` (fast/book/full); ``MINILLM_FAST=1`` is accepted as a shorthand for fast."""
        environ = os.environ if environ is None else environ
        mode = environ.get("MINILLM_MODE", "").strip().lower()
        fast_flag = environ.get("MINILLM_FAST", "").strip().lower()
        if fast_flag in ("1", "true", "yes"):
            if mode not in ("", "fast"):
                raise ValueError(f"MINILLM_FAST=1 contradicts MINILLM_MODE={mode!r}; unset one of them")
            mode = "fast"
        if not mode:
            mode = "book"
        if mode not in MODES:
            raise ValueError(f"MINILLM_MODE must be one of {MODES}, got {mode!r}")
        return cls(mode)

    @property
    def fast(self) -> bool:
        return self.name == "fast"

    def pick(self, fast: T, book: T, full: T | None = None) -> T:
        """The setting for this mode, e.g. ``steps = mode.pick(fast=50, book=500, full=5000)``."""
        if self.name == "fast":
            return fast
        if self.name == "full" and full is not None:
            return full
        return book


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
