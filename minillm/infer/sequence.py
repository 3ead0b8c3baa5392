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
from typing import Any

from minillm.generate import check_sampling


@dataclass(frozen=True)
class SamplingParams:
    """How to sample the completions of one prompt, with vLLM's field names and defaults (``vllm.SamplingParams``).

    ``n`` completions (sharing the prompt's KV blocks); ``temperature`` 0 is greedy, else softmax at that temperature
    restricted to ``top_k`` tokens and/or the ``top_p`` nucleus (as ``minillm.generate.sample_next``; None disables
    them where vLLM uses -1 and 1.0); at most ``max_tokens`` new tokens.

    A completion ends at the first of: a string of ``stop`` appearing in its decoded text (the text is cut before it
    unless ``include_stop_str_in_output``; the prompt's text is not searched), a token of ``stop_token_ids`` (left
    out of the output), the tokenizer's stop tokens unless ``ignore_eos``. ``seed`` makes a request's samples
    repeatable whatever else is in the batch: completion ``i`` draws from its own generator seeded ``seed + i``
    (vLLM's parallel sampling does the same); None shares the engine's generator.
    """

    n: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int = 16
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    seed: int | None = None

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
        object.__setattr__(self, "stop", _stop_strings(self.stop))
        ids = (self.stop_token_ids,) if _is_int(self.stop_token_ids) else self.stop_token_ids
        if not isinstance(ids, (list, tuple, set, frozenset)) or not all(_is_int(t) and t >= 0 for t in ids):
            raise ValueError(f"SamplingParams.stop_token_ids must be token ids (ints >= 0), got "
                             f"{self.stop_token_ids!r}; stop strings go in stop=[...]")
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in ids))
        for name in ("ignore_eos", "include_stop_str_in_output"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SamplingParams.{name} must be a bool, got {getattr(self, name)!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError(f"SamplingParams.seed must be None or an int, got {self.seed!r}")
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _stop_strings(stop) -> tuple[str, ...]:
    """``stop`` as a tuple of non-empty strings; token ids get an error that names ``stop_token_ids``."""
    stop = (stop,) if isinstance(stop, str) or _is_int(stop) else stop
    if not isinstance(stop, (list, tuple, set, frozenset)):
        raise ValueError(f"SamplingParams.stop must be a string or a list of strings, got {stop!r}")
    ints = [s for s in stop if _is_int(s)]
    if ints:
        raise ValueError(f"SamplingParams.stop must be strings (as in vLLM), got token ids {ints!r}: pass "
                         f"token ids as stop_token_ids={[int(i) for i in ints]!r}")
    if not all(isinstance(s, str) and s for s in stop):
        raise ValueError(f"SamplingParams.stop must be non-empty strings, got {stop!r}")
    return tuple(stop)


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
    stop_ids: frozenset[int] = frozenset()          # stop_token_ids + the tokenizer's stop tokens
    num_computed: int = 0
    pending_forks: int = 0     # children still to fork from this parent once its prompt is prefilled
    status: Status = Status.WAITING
    finish_reason: str | None = None     # "stop", "length" or "abort" (see error)
    text: str = field(default="", repr=False)      # decoded output so far (cut at a stop string)
    emitted: int = 0                                # len(text) already streamed (the rest may start a stop string)
    stop_reason: str | int | None = None
    generator: Any = field(default=None, repr=False)   # torch.Generator of a seeded request, else None
    decoder: Any = field(default=None, repr=False)     # minillm.tokenizer.IncrementalDecoder of its output
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

    def cut_at_stop_string(self, old: int) -> str | None:
        """The earliest stop string that the text added after ``text[:old]`` completes (only a string ending there
        can be new; the prompt is never searched), with ``text`` cut before it (after it, to include it); or None."""
        p = self.params
        start = max(0, old - max(len(s) for s in p.stop) + 1)
        found = [(i, s) for s in p.stop if (i := self.text.find(s, start)) >= 0]
        if not found:
            return None
        i, s = min(found)
        self.text = self.text[:i + len(s) if p.include_stop_str_in_output else i]
        return s

    def take_new_text(self) -> str:
        """The text not streamed yet that is certain: while running, the last ``len(longest stop string) - 1``
        characters are held back, since they could start a stop string (vLLM's detokenizer does the same)."""
        hold = 0
        if self.finish_reason is None and self.params.stop and not self.params.include_stop_str_in_output:
            hold = max(len(s) for s in self.params.stop) - 1
        end = max(self.emitted, len(self.text) - hold)
        piece, self.emitted = self.text[self.emitted:end], end
        return piece
