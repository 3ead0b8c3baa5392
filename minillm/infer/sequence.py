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
import numbers
from dataclasses import dataclass, field

from minillm.generate import check_sampling


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
        """Validate every field once, here: the engine trusts them afterwards (a NaN temperature would otherwise
        fail inside ``torch.multinomial`` at a later step)."""
        for name in ("n", "max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                what = "completions per prompt" if name == "n" else "new tokens per completion"
                raise ValueError(f"SamplingParams.{name} must be a positive int ({what}), got {value!r}")
            object.__setattr__(self, name, int(value))
        check_sampling(self.temperature, self.top_k, self.top_p, owner="SamplingParams.")
        if self.top_k is not None:
            object.__setattr__(self, "top_k", int(self.top_k))
        object.__setattr__(self, "temperature", float(self.temperature))
        if self.top_p is not None:
            object.__setattr__(self, "top_p", float(self.top_p))
        stop = (self.stop,) if isinstance(self.stop, numbers.Integral) else self.stop
        if not isinstance(stop, (list, tuple, set, frozenset)) or not all(
                isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in stop):
            raise ValueError(f"SamplingParams.stop must be token ids (ints), got {self.stop!r}; encode strings first")
        object.__setattr__(self, "stop", tuple(int(t) for t in stop))
        if not isinstance(self.ignore_eos, bool):
            raise ValueError(f"SamplingParams.ignore_eos must be a bool, got {self.ignore_eos!r}")


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
    finish_reason: str | None = None     # "stop", "length" or "abort" (see error)
    text: str = field(default="", repr=False)
    error: Exception | None = None       # why an aborted sequence's request failed (None: aborted by the caller)

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
