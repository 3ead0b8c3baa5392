"""Sequence packing: documents → one token stream with document ids → fixed-length training sequences (report §3.4.1).

Pre-training concatenates tokenised documents (``<|begin_of_text|> … <|end_of_text|>``) into one long stream and cuts
it into sequences of ``seq_len`` tokens, so no compute is spent on padding. A sequence then holds the tail of one
document, a few whole ones and the head of the next. The report (§3.2) keeps them apart: "we use an
attention mask that prevents self-attention between different documents within the same sequence". Here:

- ``pack_documents`` builds the stream ``tokens (S,)`` and ``doc_ids (S,)``: the *global* index of the document each
  token belongs to. A document cut by a sequence boundary keeps the same id on both sides, so its continuation in the
  next sequence is still one document (the mask only compares ids within a row, so any consistent numbering works);
- ``batch_at`` reads ``batch_size`` consecutive windows of ``seq_len + 1`` tokens starting at a stream position and
  returns inputs, targets (the next token) and doc ids for ``minillm.Llama(tokens, doc_ids=...)``;
- a target that belongs to another document than its input (the ``<|end_of_text|>`` → next ``<|begin_of_text|>``
  transition) is set to ``IGNORE`` (-100), so the loss of document B depends on document B alone.

RoPE positions are not reset per document: attention scores depend only on the *difference* of positions, and the
mask already removes every cross-document pair, so a document starting mid-sequence sees the same relative geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

IGNORE = -100  # target value that F.cross_entropy(ignore_index=-100) skips


@dataclass(frozen=True)
class PackedData:
    """A packed token stream. ``tokens``, ``doc_ids`` and (optional) ``token_bytes`` are ``(S,)`` int64 tensors;
    ``token_bytes[i]`` is the number of UTF-8 bytes token ``i`` stands for (0 for special tokens), used by
    bits-per-byte evaluation."""

    tokens: torch.Tensor
    doc_ids: torch.Tensor
    token_bytes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.tokens.dim() != 1 or self.doc_ids.shape != self.tokens.shape:
            raise ValueError(f"PackedData.tokens and doc_ids must be 1-D of equal length, got "
                             f"{tuple(self.tokens.shape)} and {tuple(self.doc_ids.shape)}")
        if self.token_bytes is not None and self.token_bytes.shape != self.tokens.shape:
            raise ValueError(f"PackedData.token_bytes must have the tokens' shape {tuple(self.tokens.shape)}, got "
                             f"{tuple(self.token_bytes.shape)}; pass token_bytes=None to skip bits per byte")

    def __len__(self) -> int:
        return self.tokens.numel()

    @property
    def n_documents(self) -> int:
        return int(self.doc_ids.unique().numel())

    def n_windows(self, seq_len: int) -> int:
        """How many non-overlapping ``seq_len`` sequences (each with its next-token targets) the stream holds."""
        return max(0, (len(self) - 1) // seq_len)


@dataclass(frozen=True)
class Batch:
    """One batch: ``tokens``, ``targets`` and ``doc_ids``, each ``(B, T)`` int64."""

    tokens: torch.Tensor
    targets: torch.Tensor
    doc_ids: torch.Tensor

    def rows(self, start: int, stop: int) -> "Batch":
        """Rows ``start:stop`` (a micro-batch, or one rank's share of a global batch)."""
        return Batch(self.tokens[start:stop], self.targets[start:stop], self.doc_ids[start:stop])

    def to(self, device) -> "Batch":
        return Batch(self.tokens.to(device), self.targets.to(device), self.doc_ids.to(device))


def pack_documents(docs: Sequence[Sequence[int]], bos_id: int | None = None, eos_id: int | None = None,
                   shuffle_seed: int | None = None, byte_lengths: torch.Tensor | None = None) -> PackedData:
    """Concatenate tokenised documents into one stream.

    ``docs``: lists of token ids (without BOS/EOS; ``bos_id``/``eos_id`` are added around each when given).
    ``shuffle_seed``: shuffle the document order first (deterministically). ``byte_lengths (vocab,)``: bytes per token
    id (``token_byte_lengths``) to fill ``token_bytes``. Empty documents are dropped.
    Returns ``PackedData`` with ``tokens (S,)`` and ``doc_ids (S,)`` (ids ``0..n_docs-1`` in stream order).
    """
    order = list(range(len(docs)))
    if shuffle_seed is not None:
        order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
    pieces, ids = [], []
    for i in order:
        doc = [*([bos_id] if bos_id is not None else []), *docs[i], *([eos_id] if eos_id is not None else [])]
        if not docs[i]:
            continue
        pieces.append(torch.as_tensor(doc, dtype=torch.long))
        ids.append(torch.full((len(doc),), len(ids), dtype=torch.long))
    if not pieces:
        raise ValueError("pack_documents got no non-empty document; pass at least one list of token ids")
    tokens, doc_ids = torch.cat(pieces), torch.cat(ids)                     # (S,), (S,)
    token_bytes = None if byte_lengths is None else byte_lengths.long()[tokens]
    return PackedData(tokens, doc_ids, token_bytes)


def token_byte_lengths(tokenizer) -> torch.Tensor:
    """``(vocab,)`` int64: UTF-8 bytes of each token of a byte-level BPE ``minillm.tokenizer.Tokenizer``."""
    special = set(tokenizer.special_ids)
    lengths = [0 if i in special else len(tokenizer.id_to_token(i) or "") for i in range(tokenizer.vocab_size)]
    return torch.tensor(lengths, dtype=torch.long)


def pack_texts(texts: Sequence[str], tokenizer, shuffle_seed: int | None = None,
               with_bytes: bool = True) -> PackedData:
    """Tokenise ``texts`` with a ``minillm.tokenizer.Tokenizer`` (BOS … EOS per document) and pack them."""
    docs = [tokenizer.encode(t) for t in texts]
    lengths = token_byte_lengths(tokenizer) if with_bytes else None
    return pack_documents(docs, tokenizer.bos_id, tokenizer.eos_id, shuffle_seed, lengths)


def batch_at(data: PackedData, position: int, batch_size: int, seq_len: int) -> Batch:
    """The ``batch_size`` consecutive sequences starting at stream ``position``.

    Row ``b`` covers stream tokens ``position + b·seq_len … + seq_len`` (inputs) and the same shifted by one
    (targets); targets crossing into another document are ``IGNORE``. Returns a ``Batch`` of ``(B, T)`` tensors.
    """
    need = batch_size * seq_len + 1
    if position < 0 or position + need > len(data):
        raise ValueError(f"a batch of {batch_size}×{seq_len} tokens at position {position} needs {need} tokens but the "
                         f"stream holds {len(data)}; pack more documents or lower batch_size/seq_len")
    window = slice(position, position + need)
    tok, ids = data.tokens[window], data.doc_ids[window]                   # (B·T + 1,)
    inputs = tok[:-1].view(batch_size, seq_len)                             # (B, T)
    targets = tok[1:].view(batch_size, seq_len).clone()                     # (B, T): next token
    doc_ids = ids[:-1].view(batch_size, seq_len)                            # (B, T)
    crosses = ids[1:].view(batch_size, seq_len) != doc_ids                  # target in another document
    targets[crosses] = IGNORE
    return Batch(inputs, targets, doc_ids)


def target_bytes(data: PackedData, position: int, batch_size: int, seq_len: int) -> torch.Tensor:
    """Bytes of each target of ``batch_at(data, position, ...)``: ``(B, T)`` (0 where the target is ``IGNORE``)."""
    if data.token_bytes is None:
        raise ValueError("this PackedData has no token_bytes; pack it with byte_lengths (or pack_texts)")
    need = batch_size * seq_len + 1
    ids = data.doc_ids[position:position + need]
    nbytes = data.token_bytes[position + 1:position + need].view(batch_size, seq_len).clone()
    nbytes[(ids[1:] != ids[:-1]).view(batch_size, seq_len)] = 0
    return nbytes


class StreamLoader:
    """Reads a ``PackedData`` front to back, one global batch at a time, wrapping around at the end (a new epoch).

    Its whole state is ``(position, epoch)``: two integers a checkpoint stores for an exact resume. Every data-parallel
    rank holds the same loader and takes its own rows of the same global batch, so ranks never need to talk about data.
    """

    def __init__(self, data: PackedData, position: int = 0, epoch: int = 0):
        self.data, self.position, self.epoch = data, position, epoch

    def next_batch(self, batch_size: int, seq_len: int) -> Batch:
        """The next ``(batch_size, seq_len)`` batch; advances the position by ``batch_size·seq_len`` tokens."""
        if batch_size * seq_len + 1 > len(self.data):
            raise ValueError(f"the stream ({len(self.data)} tokens) is shorter than one batch of {batch_size}×{seq_len}; "
                             f"pack more documents or lower the batch size")
        if self.position + batch_size * seq_len + 1 > len(self.data):
            self.position, self.epoch = 0, self.epoch + 1                   # drop the tail, start a new epoch
        batch = batch_at(self.data, self.position, batch_size, seq_len)
        self.position += batch_size * seq_len
        return batch

    def state_dict(self) -> dict:
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.epoch = int(state["position"]), int(state["epoch"])
