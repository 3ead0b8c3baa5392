"""What the engine serves: sampling parameters, and a sequence's tokens and progress.

A request is one prompt with ``SamplingParams``; it becomes ``n`` sequences once the prompt's prefill has sampled
(the parent forks ``n - 1`` children that share its KV blocks: vLLM §4.4, parallel sampling). A ``Sequence`` holds
prompt + generated token ids and ``num_computed``: how many of them have their keys/values in the KV cache. A decode
step computes exactly one token (the last one), a prefill chunk several; preemption by recomputation (vLLM §4.5)
resets ``num_computed`` to 0, keeping the tokens, so the sequence is prefilled again later (prefix caching makes
that cheap when its blocks were not evicted meanwhile).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Sequence as Seq


@dataclass(frozen=True)
class SamplingParams:
    """How to sample the completions of one prompt.

    ``n`` completions (sharing the prompt's KV blocks); ``temperature`` 0 is greedy, else softmax at that temperature
    restricted to ``top_k`` tokens and/or the ``top_p`` nucleus (as ``minillm.generate.sample_next``); at most
    ``max_tokens`` new tokens; generation stops at a token of ``stop`` (not included in the output) or at the
    tokenizer's stop tokens unless ``ignore_eos``.
    """

    n: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int = 16
    stop: tuple[int, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"SamplingParams.n must be a positive int, got {self.n!r}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"SamplingParams.top_k must be None or an int >= 1, got {self.top_k!r}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingParams.top_p must be None or in (0, 1], got {self.top_p}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be a positive int, got {self.max_tokens!r}")
        if isinstance(self.stop, int):
            object.__setattr__(self, "stop", (self.stop,))
        if not all(isinstance(t, int) for t in self.stop):
            raise ValueError(f"SamplingParams.stop must be token ids (ints), got {self.stop!r}; encode strings first")
        object.__setattr__(self, "stop", tuple(self.stop))


class Status(enum.Enum):
    WAITING = "waiting"        # no KV blocks (new, or preempted)
    RUNNING = "running"        # holds KV blocks: prefilling or decoding
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """One completion in progress: ``token_ids`` = prompt + output; ``num_computed`` tokens have KV in the cache."""

    seq_id: int
    request_id: int
    sample_index: int
    token_ids: list[int]
    prompt_len: int
    params: SamplingParams
    stop_ids: frozenset[int] = frozenset()
    num_computed: int = 0
    pending_forks: int = 0     # children still to fork from this parent once its prompt is prefilled
    status: Status = Status.WAITING
    finish_reason: str | None = None
    text: str = field(default="", repr=False)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.prompt_len:]

    @property
    def is_prefill(self) -> bool:
        """More than the last token still lacks KV (a prompt, or a sequence being recomputed after preemption)."""
        return self.num_tokens - self.num_computed > 1


def check_prompt(prompt: Seq[int], vocab_size: int, max_seq_len: int, max_tokens: int) -> list[int]:
    """A prompt as a list of ints, or a ``ValueError`` saying what is wrong with it."""
    ids = [int(t) for t in prompt]
    if not ids:
        raise ValueError("a prompt must have at least one token")
    if not all(0 <= t < vocab_size for t in ids):
        raise ValueError(f"prompt has token ids outside [0, vocab_size={vocab_size})")
    if len(ids) + max_tokens > max_seq_len:
        raise ValueError(f"prompt of {len(ids)} tokens + max_tokens={max_tokens} exceeds the model's context "
                         f"max_seq_len={max_seq_len}: shorten the prompt or lower max_tokens")
    return ids
