"""Learning-rate and batch-size schedules of Llama 3 pre-training (report §3.4.1 and §3.4.3).

- ``LRSchedule``: linear warm-up to a peak, cosine decay to a floor, optionally a final *annealing* phase that takes
  the learning rate linearly to 0. The 405B run: peak 8 × 10⁻⁵, 8,000 warm-up steps, cosine decay to 8 × 10⁻⁷ over
  1,200,000 steps (§3.4.1); annealing: "linearly annealed the learning rate to 0" over the final 40M tokens (§3.4.3).
  ``LRSchedule.llama3()`` holds those numbers; ``.scaled(total_steps)`` keeps the shape (warm-up fraction, peak/floor
  ratio) for a run of any length.
- ``BatchRamp``: batch size and sequence length as a function of tokens seen. §3.4.1: "an initial batch size of 4M
  tokens and sequences of length 4,096, and double these values to a batch size of 8M sequences of 8,192 tokens after
  pre-training 252M tokens. We double the batch size again to 16M after pre-training on 2.87T tokens."

Steps are counted from 0: ``lr(step)`` is the rate used by optimizer step ``step``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LRSchedule:
    """Warm-up → cosine → floor (→ linear anneal to 0). ``lr(step)`` is a pure function of the step.

    - steps ``0 .. warmup_steps - 1``: linear, ``peak_lr · (step + 1) / warmup_steps`` (nanoGPT's convention: no
      step is wasted at rate 0), so the last warm-up step, ``warmup_steps - 1``, runs at ``peak_lr``;
    - steps ``warmup_steps .. total_steps``: cosine from ``peak_lr`` (at ``warmup_steps``) down to ``final_lr``
      (reached exactly at ``total_steps``), then ``final_lr`` forever;
    - with ``anneal_steps > 0`` the schedule above runs until ``anneal_start`` and the rate then falls linearly from
      its value there to 0 at ``anneal_start + anneal_steps`` (report §3.4.3).
    """

    peak_lr: float = 8e-5
    warmup_steps: int = 8_000
    total_steps: int = 1_200_000
    final_lr: float = 8e-7
    anneal_start: int = 0
    anneal_steps: int = 0

    def __post_init__(self) -> None:
        if not self.peak_lr > 0:
            raise ValueError(f"LRSchedule.peak_lr must be positive, got {self.peak_lr}")
        if not 0 <= self.final_lr <= self.peak_lr:
            raise ValueError(f"LRSchedule.final_lr ({self.final_lr}) must lie in [0, peak_lr={self.peak_lr}]")
        if self.warmup_steps < 0:
            raise ValueError(f"LRSchedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.total_steps < self.warmup_steps:
            raise ValueError(f"LRSchedule.total_steps ({self.total_steps}) must be >= warmup_steps "
                             f"({self.warmup_steps}): the cosine phase runs from the end of warm-up to total_steps")
        if self.anneal_steps < 0 or self.anneal_start < 0:
            raise ValueError(f"LRSchedule.anneal_start/anneal_steps must be >= 0, got {self.anneal_start}, "
                             f"{self.anneal_steps}")

    @classmethod
    def llama3(cls) -> "LRSchedule":
        """The 405B pre-training schedule of §3.4.1."""
        return cls()

    def scaled(self, total_steps: int, peak_lr: float | None = None) -> "LRSchedule":
        """The same shape over ``total_steps``: warm-up as the same fraction (at least 1 step), floor = the same
        fraction of the peak (1% for Llama 3). Annealing is not carried over (add it with ``with_annealing``)."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        peak = self.peak_lr if peak_lr is None else peak_lr
        warmup = max(1, round(total_steps * self.warmup_steps / self.total_steps))
        return LRSchedule(peak, min(warmup, total_steps), total_steps, peak * self.final_lr / self.peak_lr)

    def with_annealing(self, start: int, steps: int) -> "LRSchedule":
        """This schedule, then a linear decay to 0 over ``steps`` steps starting at step ``start``."""
        if steps < 1:
            raise ValueError(f"annealing steps must be >= 1, got {steps}")
        return replace(self, anneal_start=start, anneal_steps=steps)

    def base_lr(self, step: int) -> float:
        """Warm-up + cosine + floor, without annealing."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps              # linear; peak at step warmup_steps - 1
        if step >= self.total_steps:
            return self.final_lr
        span = self.total_steps - self.warmup_steps
        progress = (step - self.warmup_steps) / span                          # 0 → 1
        return self.final_lr + 0.5 * (self.peak_lr - self.final_lr) * (1 + math.cos(math.pi * progress))

    def lr(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.anneal_steps and step >= self.anneal_start:
            start_lr = self.base_lr(self.anneal_start)
            return start_lr * max(0.0, 1 - (step - self.anneal_start) / self.anneal_steps)
        return self.base_lr(step)

    __call__ = lr


@dataclass(frozen=True)
class RampStage:
    """From ``start_tokens`` tokens seen on: batches of ``batch_tokens`` tokens in sequences of ``seq_len``."""

    start_tokens: int
    batch_tokens: int
    seq_len: int

    @property
    def batch_size(self) -> int:
        """Sequences per global batch."""
        return self.batch_tokens // self.seq_len


@dataclass(frozen=True)
class BatchRamp:
    """A piecewise-constant batch-size / sequence-length schedule over tokens seen (report §3.4.1).

    ``at(tokens_seen)`` returns the ``RampStage`` in force; the trainer asks it before every step, so a stage starts
    with the first step taken after its token threshold is passed.
    """

    stages: tuple[RampStage, ...]

    def __post_init__(self) -> None:
        stages = tuple(s if isinstance(s, RampStage) else RampStage(*s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages or stages[0].start_tokens != 0:
            raise ValueError("BatchRamp.stages must start with a stage at start_tokens=0")
        for prev, stage in zip(stages, stages[1:]):
            if stage.start_tokens <= prev.start_tokens:
                raise ValueError(f"BatchRamp.stages must have increasing start_tokens, got {prev.start_tokens} then "
                                 f"{stage.start_tokens}")
        for s in stages:
            if s.seq_len < 1 or s.batch_tokens < s.seq_len or s.batch_tokens % s.seq_len:
                raise ValueError(f"BatchRamp stage {s}: batch_tokens must be a positive multiple of seq_len; "
                                 f"use batch_tokens = sequences × seq_len")

    @classmethod
    def constant(cls, batch_size: int, seq_len: int) -> "BatchRamp":
        """No ramp: ``batch_size`` sequences of ``seq_len`` tokens throughout."""
        return cls((RampStage(0, batch_size * seq_len, seq_len),))

    @classmethod
    def llama3(cls) -> "BatchRamp":
        """§3.4.1: 4M × 4,096 → 8M × 8,192 after 252M tokens → 16M × 8,192 after 2.87T tokens (M = 2²⁰ here)."""
        m = 2**20
        return cls((RampStage(0, 4 * m, 4096), RampStage(252_000_000, 8 * m, 8192),
                    RampStage(2_870_000_000_000, 16 * m, 8192)))

    def scaled(self, token_factor: float, seq_factor: float) -> "BatchRamp":
        """The same shape with thresholds and batch tokens × ``token_factor`` and sequence lengths × ``seq_factor``
        (rounded so that each batch is a whole number of sequences, at least one)."""
        stages = []
        for s in self.stages:
            seq_len = max(1, round(s.seq_len * seq_factor))
            rows = max(1, round(s.batch_tokens * token_factor / seq_len))
            stages.append(RampStage(round(s.start_tokens * token_factor), rows * seq_len, seq_len))
        return BatchRamp(tuple(stages))

    def at(self, tokens_seen: int) -> RampStage:
        """The stage in force after ``tokens_seen`` training tokens."""
        current = self.stages[0]
        for stage in self.stages[1:]:
            if tokens_seen >= stage.start_tokens:
                current = stage
        return current

    @property
    def max_seq_len(self) -> int:
        return max(s.seq_len for s in self.stages)
