"""What ``LLMEngine`` returns: a ``RequestOutput`` per prompt with its ``Completion``s, and ``StreamEvent``s token by
token (vLLM's ``outputs.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Completion:
    """One sampled continuation: new token ids (stop token excluded), its text, and why it ended."""

    token_ids: list[int]
    text: str | None
    finish_reason: str            # "stop" (a stop token), "length" (max_tokens) or "abort"


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    completions: list[Completion] = field(default_factory=list)
    error: Exception | None = None        # set when a step failed for this request (it was aborted)


@dataclass
class StreamEvent:
    """A token sampled for completion ``sample_index`` of prompt ``request_id`` (``token_id`` is None when a stop token
    ended it); ``text`` is the new text it adds; ``finish_reason`` is set on its last event: "abort" when the request
    was aborted, with ``error`` the exception that made a step fail for it (None: aborted by the caller)."""

    request_id: int
    sample_index: int
    token_id: int | None
    text: str
    finish_reason: str | None
    error: Exception | None = None
