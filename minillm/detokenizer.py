"""Incremental detokenization: the text of a growing list of token ids, piece by piece (vLLM's ``detokenizer.py``).

Decoding all the ids again after every new token costs O(n) per token, and its text is not always a prefix of the
next one: a byte-level BPE token can carry part of a UTF-8 character, which ``decode`` shows as U+FFFD until the
next token completes it. ``IncrementalDecoder.step(token_id)`` returns only the new text, holding a partial
character back. With a ``tokenizers.Tokenizer`` underneath (``minillm.Tokenizer``, Hugging Face's fast
tokenizers) it is Hugging Face's ``DecodeStream``, which keeps a few ids of context; any other object with a
``decode(ids)`` gets the same idea in Python: decode a small window (the ids printed last, as context, and the
pending ones) and wait while it ends in U+FFFD.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import tokenizers
from tokenizers.decoders import DecodeStream


class IncrementalDecoder:
    """``step(token_id) -> str``: the text ``token_id`` adds ("" while it ends inside a character); ``flush()``: what
    is still held back when the ids stop (``decode`` of the ids shows an unfinished character as U+FFFD). The
    pieces, flush included, join to ``tokenizer.decode(all ids, skip_special_tokens)``."""

    def __init__(self, tokenizer, skip_special_tokens: bool = False):
        self.tokenizer, self.skip = tokenizer, skip_special_tokens
        hf = tokenizer if isinstance(tokenizer, tokenizers.Tokenizer) else getattr(tokenizer, "hf", None)
        self.hf = hf if isinstance(hf, tokenizers.Tokenizer) else None
        self.stream = DecodeStream(skip_special_tokens=skip_special_tokens) if self.hf is not None else None
        self.ids: list[int] = []
        self.text = ""                          # the pieces returned so far
        self._window: list[int] = []            # fallback: window[:shown] printed already (context), the rest pending
        self._shown, self._shown_text = 0, ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def step(self, token_id: int) -> str:
        token_id = int(token_id)
        self.ids.append(token_id)
        if self.stream is not None:
            if not 0 <= token_id < self.hf.get_vocab_size(with_added_tokens=True):
                raise ValueError(f"token id {token_id} is outside the vocabulary")
            piece = self.stream.step(self.hf, token_id) or ""
        else:
            self._window.append(token_id)
            text = self._decode(self._window)
            if text.endswith("\ufffd") or len(text) <= len(self._shown_text):   # inside a character, or nothing yet
                return ""
            piece = text[len(self._shown_text):]
            self._window = self._window[self._shown:]
            self._shown, self._shown_text = len(self._window), self._decode(self._window)
        self.text += piece
        return piece

    def flush(self) -> str:
        """The text held back at the end (an unfinished character, as ``decode`` writes it)."""
        if self.stream is None:                 # the pending ids, after their context
            text = self._decode(self._window) if len(self._window) > self._shown else self._shown_text
            piece = text[len(self._shown_text):]
            self._shown, self._shown_text = len(self._window), text
        else:
            full = self._decode(self.ids)
            piece = full[len(self.text):] if full.startswith(self.text) else ""
        self.text += piece
        return piece


def text_chunks(tokenizer, tokens: Iterable[int], skip_special_tokens: bool = False) -> Iterator[str]:
    """The text of ``tokens``, piece by piece as they arrive (empty pieces left out); the pieces join to
    ``tokenizer.decode(all tokens)``."""
    decoder = IncrementalDecoder(tokenizer, skip_special_tokens)
    for token in tokens:
        if piece := decoder.step(token):
            yield piece
    if piece := decoder.flush():
        yield piece
