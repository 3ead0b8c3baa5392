"""Continuous batching: which sequences run in the next model step (Orca, Yu et al. 2022; vLLM §4.5).

A static batch runs until its longest member finishes, so short requests idle and new ones wait. Here the batch is
rebuilt before **every** step (iteration-level scheduling): finished sequences leave, waiting ones join as soon as
blocks and the token budget allow. One step mixes decodes (1 token each) with prefill chunks:

1. running sequences first, oldest first: a decode needs a writable slot (``BlockManager.append_slot``); when no
   block is free, the *newest* running sequence is **preempted by recomputation** (its blocks freed, its tokens kept,
   back to the front of the queue; vLLM §4.5) until one is — possibly itself;
2. then waiting sequences, first come first served, while ``max_num_seqs``, the free blocks (for the whole prompt,
   minus prefix-cache hits) and ``max_num_batched_tokens`` allow; with ``enable_chunked_prefill`` a long prompt is
   split over several steps (Sarathi, Agrawal et al. 2023), otherwise it waits until its whole prompt fits the budget
   (or runs alone when nothing else is scheduled). No admission in a step that preempted (the pool is full).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from minillm.infer.block_manager import BlockManager
from minillm.infer.sequence import Sequence, Status


@dataclass(frozen=True)
class SchedulerConfig:
    """``max_num_seqs`` sequences and ``max_num_batched_tokens`` tokens per step at most; ``enable_chunked_prefill``
    splits prompts longer than the step's remaining token budget."""

    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SchedulerConfig.{name} must be a positive int, got {value!r}")


@dataclass
class ScheduledBatch:
    """One step: ``seqs[i]`` computes tokens ``num_computed .. num_computed + num_new[i]``; ``copies`` are the
    copy-on-write block copies ``(src, dst)`` to do first; ``preempted`` lost their blocks this step."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new: list[int] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new)


class Scheduler:
    """Waiting queue + running list over one ``BlockManager``."""

    def __init__(self, config: SchedulerConfig, block_manager: BlockManager):
        self.config, self.bm = config, block_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = Status.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def preempt(self, seq: Sequence) -> None:
        """Free a running sequence's blocks; it will be prefilled again from its tokens (recomputation)."""
        self.bm.free(seq.seq_id)
        self.running.remove(seq)
        seq.num_computed, seq.status = 0, Status.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def finish(self, seq: Sequence, reason: str) -> None:
        self.bm.free(seq.seq_id)
        self.running.remove(seq)
        seq.status, seq.finish_reason = Status.FINISHED, reason

    def abort(self, seq: Sequence, reason: str = "abort") -> None:
        """Drop a sequence wherever it is (waiting, or running with blocks); a finished one is left as it is."""
        if seq.status is Status.RUNNING:
            self.finish(seq, reason)
        elif seq.status is Status.WAITING:
            self.waiting.remove(seq)
            seq.status, seq.finish_reason = Status.FINISHED, reason

    def schedule(self) -> ScheduledBatch:
        cfg, bm, batch = self.config, self.bm, ScheduledBatch()
        budget = cfg.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0:                  # 1. running sequences, oldest first
            seq = self.running[i]
            remaining = seq.num_tokens - seq.num_computed
            if remaining == 1:                                        # decode: needs one writable slot
                while not bm.can_append(seq.seq_id, seq.num_tokens):
                    victim = self.running[-1]                         # newest first (vLLM's LIFO)
                    self.preempt(victim)
                    batch.preempted.append(victim)
                    if victim is seq:
                        break
                if seq.status is Status.WAITING:
                    break                                             # it preempted itself: nothing after it
                copy = bm.append_slot(seq.seq_id, seq.num_tokens)
                if copy is not None:
                    batch.copies.append(copy)
                n = 1
            elif cfg.enable_chunked_prefill:
                n = min(remaining, budget)
            elif remaining <= budget or not batch.seqs:
                n = remaining
            else:
                i += 1
                continue
            batch.seqs.append(seq)
            batch.num_new.append(n)
            budget -= n
            i += 1

        while (self.waiting and budget > 0 and not batch.preempted  # 2. admit waiting sequences
               and len(self.running) < cfg.max_num_seqs):
            seq = self.waiting[0]
            if not bm.can_allocate(seq.token_ids):
                break
            if not cfg.enable_chunked_prefill and seq.num_tokens > budget and batch.seqs:
                break
            self.waiting.popleft()
            seq.num_computed = bm.allocate(seq.seq_id, seq.token_ids)  # prefix-cache hits are already computed
            seq.status = Status.RUNNING
            self.running.append(seq)
            remaining = seq.num_tokens - seq.num_computed
            n = min(remaining, budget) if cfg.enable_chunked_prefill else remaining
            batch.seqs.append(seq)
            batch.num_new.append(n)
            budget -= n
        return batch
