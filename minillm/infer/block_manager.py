"""KV-cache blocks as pages: block tables, reference counts, copy-on-write and prefix caching (vLLM §4.1-4.4).

A contiguous KV cache reserves ``max_seq_len`` slots per sequence up front; most of them never hold a token
(vLLM paper §3: only 20-38% of reserved KV memory held real tokens in earlier systems). PagedAttention splits the
cache into fixed-size **blocks** of ``block_size`` tokens (16 by default, vLLM §7.2) and gives each sequence a
**block table**: logical block ``i`` (tokens ``i·bs .. (i+1)·bs``) lives in physical block ``table[i]``, anywhere in
the pool. A sequence holds at most one partly filled block, so waste is below ``block_size`` tokens per sequence.

What this module keeps (no tensors: the KV pool lives in ``paged_attention.py``; this is bookkeeping only):

- a **free list** of physical blocks and a **reference count** per block;
- **fork** (vLLM §4.4, parallel sampling): a child sequence copies the parent's table and bumps the counts, so the
  ``n`` samples of one prompt share its KV blocks; the first write into a shared, partly filled block triggers
  **copy-on-write**: the writer gets a fresh block and the engine copies the block's KV (``append_slot`` returns
  the ``(src, dst)`` pair);
- **prefix caching** (vLLM §4.4 "shared prefix", automatic as in vLLM/SGLang): every *full, computed* block gets a
  hash of ``(previous block's hash, its token ids)``, so equal hashes mean equal prefixes. A new sequence looks its
  full blocks up and reuses the hits (token ids are compared on a hit, never trusted from the hash). A freed block
  keeps its hash and contents and stays reusable until the free list hands it out again (LRU eviction).

Seed §2.2 (KV cache, prefix caching) and report §6.2 (PagedAttention in rejection sampling).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def block_hash(token_ids: Sequence[int], prefix_hash: int = -1) -> int:
    """Chain hash of one full block: ``sha256(previous hash, token ids)`` as a 64-bit int (-1: no previous block)."""
    h = hashlib.sha256(int(prefix_hash).to_bytes(8, "little", signed=True))
    h.update(np.asarray(token_ids, dtype=np.int64).tobytes())
    return int.from_bytes(h.digest()[:8], "little", signed=True)


@dataclass
class Block:
    """One physical block: how many tables point at it, and the prefix-cache key of its contents (if full)."""

    block_id: int
    ref_count: int = 0
    hash: int = -1                               # -1: not (yet) a cached full block
    token_ids: tuple[int, ...] = ()              # the tokens whose KV it holds, kept to verify prefix-cache hits


@dataclass
class SeqBlocks:
    """A sequence's block table and how many of its blocks are registered in the prefix cache."""

    table: list[int] = field(default_factory=list)
    num_hashed: int = 0                          # blocks table[:num_hashed] have their hash registered
    last_hash: int = -1                          # hash of table[num_hashed - 1]


class BlockManager:
    """Allocates physical KV blocks to sequences (identified by an int ``seq_id``).

    ``num_blocks`` blocks of ``block_size`` tokens; ``prefix_caching`` turns hash lookups on.
    Invariant (``check()``): a block's ``ref_count`` equals the number of block tables that contain it, and a block is
    on the free list exactly when its count is 0.
    """

    def __init__(self, num_blocks: int, block_size: int = 16, prefix_caching: bool = True):
        if not isinstance(num_blocks, int) or num_blocks <= 0:
            raise ValueError(f"num_blocks must be a positive int, got {num_blocks!r}")
        if not isinstance(block_size, int) or block_size <= 0:
            raise ValueError(f"block_size must be a positive int, got {block_size!r}")
        self.num_blocks, self.block_size, self.prefix_caching = num_blocks, block_size, prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # free blocks in the order they were freed: the first is evicted first (LRU); O(1) removal on a prefix hit
        self.free_ids: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.hash_to_block: dict[int, int] = {}
        self.seqs: dict[int, SeqBlocks] = {}
        self.stats = {"prefix_queries": 0, "prefix_hits": 0, "cow_copies": 0}

    # ------------------------------------------------------------------ helpers
    @property
    def num_free(self) -> int:
        return len(self.free_ids)

    def num_blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def table(self, seq_id: int) -> list[int]:
        return self.seqs[seq_id].table

    def _take_free(self, block_id: int | None = None) -> int:
        """Pop a free block (the given one on a prefix hit, else the least recently freed) and own it."""
        if block_id is None:
            block_id, _ = self.free_ids.popitem(last=False)
        else:
            del self.free_ids[block_id]
        self.blocks[block_id].ref_count = 1
        return block_id

    def _evict(self, block_id: int) -> None:
        """Forget the cached contents of a block that is being reused for new tokens."""
        b = self.blocks[block_id]
        if b.hash != -1 and self.hash_to_block.get(b.hash) == block_id:
            del self.hash_to_block[b.hash]
        b.hash, b.token_ids = -1, ()

    def _new_block(self) -> int:
        block_id = self._take_free()
        self._evict(block_id)
        return block_id

    def _release(self, block_id: int) -> None:
        b = self.blocks[block_id]
        if b.ref_count <= 0:
            raise RuntimeError(f"double free of block {block_id}")
        b.ref_count -= 1
        if b.ref_count == 0:
            self.free_ids[block_id] = None                       # keeps hash and contents until evicted

    def _lookup(self, token_ids: Sequence[int], count: bool = False) -> list[int]:
        """Physical blocks caching the longest run of full prompt blocks (verified token by token).

        The last block is never taken from the cache when it would leave no token to compute: the engine needs the
        logits of the last prompt token, so at least one token is always prefilled. ``count``: add the lookup to
        ``stats`` (only ``allocate`` does, so an admission counts once however often the scheduler asked first)."""
        if not self.prefix_caching:
            return []
        bs, hits, h = self.block_size, [], -1
        usable = (len(token_ids) - 1) // bs                      # full blocks that still leave >= 1 token to compute
        for i in range(usable):
            ids = tuple(token_ids[i * bs:(i + 1) * bs])
            h = block_hash(ids, h)
            self.stats["prefix_queries"] += count
            block_id = self.hash_to_block.get(h)
            if block_id is None or self.blocks[block_id].token_ids != ids:
                break
            hits.append(block_id)
            self.stats["prefix_hits"] += count
        return hits

    # ------------------------------------------------------------------ API
    def blocks_needed(self, token_ids: Sequence[int]) -> int:
        """Free blocks ``allocate(token_ids)`` would take (prefix hits on live blocks cost nothing)."""
        hits = self._lookup(token_ids)
        live = sum(self.blocks[b].ref_count > 0 for b in hits)
        return self.num_blocks_for(len(token_ids)) - live

    def can_allocate(self, token_ids: Sequence[int]) -> bool:
        return self.blocks_needed(token_ids) <= self.num_free

    def allocate(self, seq_id: int, token_ids: Sequence[int]) -> int:
        """Give a new sequence blocks for all its tokens; return how many leading tokens are already cached."""
        if seq_id in self.seqs:
            raise ValueError(f"sequence {seq_id} already has blocks; free it first")
        if not self.can_allocate(token_ids):
            raise RuntimeError(f"not enough free blocks for sequence {seq_id}: check can_allocate first")
        hits = self._lookup(token_ids, count=True)
        seq = SeqBlocks()
        for block_id in hits:                                    # shared prefix: bump counts
            if self.blocks[block_id].ref_count == 0:
                self._take_free(block_id)
            else:
                self.blocks[block_id].ref_count += 1
            seq.table.append(block_id)
        if hits:
            seq.num_hashed, seq.last_hash = len(hits), self.blocks[hits[-1]].hash
        for _ in range(self.num_blocks_for(len(token_ids)) - len(hits)):
            seq.table.append(self._new_block())
        self.seqs[seq_id] = seq
        return len(hits) * self.block_size

    def can_append(self, seq_id: int, num_tokens: int) -> bool:
        """Whether ``append_slot`` for a sequence of ``num_tokens`` tokens will find the free block it may need."""
        return self._append_cost(seq_id, num_tokens) <= self.num_free

    def _append_cost(self, seq_id: int, num_tokens: int) -> int:
        table = self.seqs[seq_id].table
        if num_tokens > len(table) * self.block_size:
            return 1                                             # a new block for the new token
        last = self.blocks[table[(num_tokens - 1) // self.block_size]]
        return int(last.ref_count > 1)                           # copy-on-write of a shared block

    def append_slot(self, seq_id: int, num_tokens: int) -> tuple[int, int] | None:
        """Make position ``num_tokens - 1`` writable for a sequence now ``num_tokens`` long (before its KV is written).

        Returns ``(src, dst)`` when a shared block was copied (copy-on-write): the caller copies that block's KV."""
        table = self.seqs[seq_id].table
        if num_tokens > len(table) * self.block_size:
            table.append(self._new_block())
            return None
        i = (num_tokens - 1) // self.block_size
        src = table[i]
        if self.blocks[src].ref_count == 1:
            return None
        dst = self._new_block()                                  # copy-on-write
        self.blocks[src].ref_count -= 1
        table[i] = dst
        self.stats["cow_copies"] += 1
        return src, dst

    def mark_computed(self, seq_id: int, token_ids: Sequence[int], num_computed: int) -> None:
        """Register the hashes of the blocks that are now full *and* hold computed KV (then others may share them)."""
        if not self.prefix_caching:
            return
        seq, bs = self.seqs[seq_id], self.block_size
        while seq.num_hashed < min(num_computed // bs, len(seq.table)):
            i = seq.num_hashed
            ids = tuple(token_ids[i * bs:(i + 1) * bs])
            h = block_hash(ids, seq.last_hash)
            b = self.blocks[seq.table[i]]
            if b.hash == -1:
                b.hash, b.token_ids = h, ids
                self.hash_to_block.setdefault(h, b.block_id)
            seq.num_hashed, seq.last_hash = i + 1, h

    def fork(self, parent_id: int, child_id: int) -> None:
        """The child shares every block of the parent (vLLM §4.4 parallel sampling)."""
        if child_id in self.seqs:
            raise ValueError(f"sequence {child_id} already has blocks")
        parent = self.seqs[parent_id]
        for block_id in parent.table:
            self.blocks[block_id].ref_count += 1
        self.seqs[child_id] = SeqBlocks(list(parent.table), parent.num_hashed, parent.last_hash)

    def free(self, seq_id: int) -> None:
        """Drop a finished or preempted sequence's references (last block first, so prefixes are evicted last)."""
        seq = self.seqs.pop(seq_id)
        for block_id in reversed(seq.table):
            self._release(block_id)

    def check(self) -> None:
        """Assert the bookkeeping invariants (used by the property tests)."""
        counts = [0] * self.num_blocks
        for seq in self.seqs.values():
            for block_id in seq.table:
                counts[block_id] += 1
        for b in self.blocks:
            assert b.ref_count == counts[b.block_id], f"block {b.block_id}: ref_count {b.ref_count} != {counts[b.block_id]}"
            assert (b.ref_count == 0) == (b.block_id in self.free_ids), f"block {b.block_id}: free list out of sync"
        for h, block_id in self.hash_to_block.items():
            assert self.blocks[block_id].hash == h, f"hash table points at block {block_id} with another hash"
