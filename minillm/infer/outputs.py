"""What the engine returns, with vLLM's names (``vllm/outputs.py``): a ``RequestOutput`` per prompt holding its
``CompletionOutput``s, and ``StreamEvent``s token by token (ours: vLLM streams whole ``RequestOutput``s instead)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompletionOutput:
    """One sampled continuation ``index`` (0 .. n-1) of a prompt: its ``text`` and new ``token_ids``.

    ``finish_reason``: "stop" (a stop string or stop token), "length" (``max_tokens``) or "abort"; ``stop_reason``
    is the stop string or stop token id that ended it (None otherwise), as in vLLM. Two deliberate differences:
    a stop *token* is left out of ``token_ids`` (vLLM keeps it) because rejection sampling and RLOO feed the ids
    straight back as training targets, where the turn's end token is added by the chat format; and ``text`` is None
    when the engine has no tokenizer (vLLM always has one), since tests and benchmarks serve bare token ids.
    A stop *string* is cut from ``text`` but the tokens that spelled it stay in ``token_ids`` (as in vLLM)."""

    index: int
    text: str | None
    token_ids: list[int]
    finish_reason: str | None
    stop_reason: str | int | None = None


@dataclass
class RequestOutput:
    """The completions of one prompt. ``request_id`` is the engine's number for it (an int; vLLM's is a str chosen
    by the caller); ``prompt`` is the prompt's text (None when it was given as token ids, as in vLLM); ``finished``:
    every completion ended on its own (stop or length) before the request left the engine. ``error`` (ours) is the
    exception that made a step fail for this request, which was then aborted."""

    request_id: int
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = False
    error: Exception | None = None


@dataclass
class StreamEvent:
    """A token sampled for completion ``sample_index`` of prompt ``request_id`` (``token_id`` is None when a stop token
    ended it); ``text`` is the new text it adds (held back while it could be the start of a stop string);
    ``finish_reason`` is set on its last event: "abort" when the request was aborted, with ``error`` the exception
    that made a step fail for it (None: aborted by the caller)."""

    request_id: int
    sample_index: int
    token_id: int | None
    text: str
    finish_reason: str | None
    error: Exception | None = None
