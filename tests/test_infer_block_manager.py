"""Block manager (vLLM §4.1-4.4): property tests over random add / fork / append / free / preempt sequences, and the
prefix cache and copy-on-write cases spelled out."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.infer.block_manager as bm_module
from minillm.infer.block_manager import BlockManager

OPS = st.lists(st.tuples(st.sampled_from(["add", "fork", "append", "free", "preempt", "compute"]),
                         st.integers(0, 10**6), st.lists(st.integers(0, 3), min_size=1, max_size=20)),
               max_size=60)


@settings(max_examples=150, deadline=None, database=None)
@given(ops=OPS, num_blocks=st.integers(1, 24), block_size=st.sampled_from([1, 2, 4]),
       prefix_caching=st.booleans())
def test_random_operations_never_leak_or_double_free_and_refcounts_match_the_tables(ops, num_blocks, block_size,
                                                                                     prefix_caching):
    bm = BlockManager(num_blocks, block_size, prefix_caching)
    tokens: dict[int, list[int]] = {}       # the sequences alive, as the engine would hold them
    next_id = 0
    for op, pick, ids in ops:
        alive = sorted(tokens)
        if op == "add" and bm.can_allocate(ids):
            cached = bm.allocate(next_id, ids)
            assert cached % block_size == 0 and cached < len(ids)
            tokens[next_id], next_id = list(ids), next_id + 1
        elif op == "fork" and alive:
            parent = alive[pick % len(alive)]
            bm.fork(parent, next_id)
            tokens[next_id], next_id = list(tokens[parent]), next_id + 1
        elif op == "append" and alive:
            sid = alive[pick % len(alive)]
            new_len = len(tokens[sid]) + 1
            if bm.can_append(sid, new_len):
                before = list(bm.table(sid))
                copy = bm.append_slot(sid, new_len)
                tokens[sid].append(ids[0])
                assert len(bm.table(sid)) * block_size >= new_len
                last = bm.table(sid)[(new_len - 1) // block_size]
                assert bm.blocks[last].ref_count == 1                    # the slot to write is not shared
                if copy is not None:
                    assert copy[0] in before and copy[1] not in before
        elif op == "compute" and alive:
            sid = alive[pick % len(alive)]
            bm.mark_computed(sid, tokens[sid], len(tokens[sid]) - 1)
        elif op in ("free", "preempt") and alive:
            sid = alive[pick % len(alive)]
            bm.free(sid)
            ids_back = tokens.pop(sid)
            if op == "preempt" and bm.can_allocate(ids_back):              # recomputation: admitted again
                bm.allocate(sid, ids_back)
                tokens[sid] = ids_back
        bm.check()
        assert bm.num_free + len({b for s in tokens for b in bm.table(s)}) == num_blocks
    for sid in list(tokens):
        bm.free(sid)
    bm.check()
    assert bm.num_free == num_blocks and all(b.ref_count == 0 for b in bm.blocks)


def test_freeing_a_block_twice_raises():
    bm = BlockManager(4, 2)
    bm.allocate(0, [1, 2, 3])
    block = bm.table(0)[0]
    bm.free(0)
    with pytest.raises(RuntimeError, match="double free"):
        bm._release(block)


def test_a_computed_prefix_is_shared_and_stays_cached_after_free_until_evicted():
    bm = BlockManager(6, 2)
    prompt = [1, 2, 3, 4, 5]
    assert bm.allocate(0, prompt) == 0
    bm.mark_computed(0, prompt, 5)
    assert bm.allocate(1, prompt + [9]) == 4                     # two full blocks hit
    assert bm.table(1)[:2] == bm.table(0)[:2] and bm.blocks[bm.table(0)[0]].ref_count == 2
    bm.free(0)
    bm.free(1)
    assert bm.num_free == 6
    assert bm.allocate(2, prompt) == 4                           # freed, still cached
    bm.free(2)
    bm.allocate(3, [7] * 12)                                     # takes every block: the cached ones are evicted
    bm.free(3)
    assert bm.allocate(6, prompt) == 0
    bm.check()


def test_prefix_statistics_count_each_admission_once_however_often_the_scheduler_asks():
    bm = BlockManager(8, 2)
    prompt = [1, 2, 3, 4, 5]
    bm.allocate(0, prompt)
    bm.mark_computed(0, prompt, 5)
    before = dict(bm.stats)
    for _ in range(3):                                           # a scheduler may check several times first
        assert bm.can_allocate(prompt) and bm.blocks_needed(prompt) == 1
    assert bm.stats == before
    bm.allocate(1, prompt)                                       # 2 usable full blocks, both hit
    assert bm.stats["prefix_queries"] - before["prefix_queries"] == 2
    assert bm.stats["prefix_hits"] - before["prefix_hits"] == 2


def test_a_hash_collision_is_caught_by_comparing_token_ids(monkeypatch):
    monkeypatch.setattr(bm_module, "block_hash", lambda ids, prefix=-1: 42)   # every block collides
    bm = BlockManager(8, 2)
    bm.allocate(0, [1, 2, 3])
    bm.mark_computed(0, [1, 2, 3], 3)
    assert bm.allocate(1, [5, 6, 7]) == 0                        # same hash, other tokens: a miss
    assert bm.allocate(2, [1, 2, 9]) == 2                        # same tokens: a hit


def test_the_last_prompt_token_is_never_taken_from_the_cache():
    bm = BlockManager(8, 2)
    bm.allocate(0, [1, 2, 3, 4])
    bm.mark_computed(0, [1, 2, 3, 4], 4)
    assert bm.allocate(1, [1, 2, 3, 4]) == 2                     # the block holding token 4 is computed again


def test_fork_shares_blocks_and_the_first_write_into_a_shared_block_copies_it():
    bm = BlockManager(8, 4)
    bm.allocate(0, [1, 2, 3, 4, 5, 6])                           # blocks: [full, half]
    bm.fork(0, 1)
    assert bm.table(1) == bm.table(0) and all(bm.blocks[b].ref_count == 2 for b in bm.table(0))
    src = bm.table(0)[1]
    src_dst = bm.append_slot(1, 7)                               # child writes position 6, in the shared block
    assert src_dst is not None and src_dst[0] == src and bm.table(1)[1] == src_dst[1]
    assert bm.append_slot(0, 7) is None                          # the parent now owns its block alone
    assert bm.table(0)[0] == bm.table(1)[0]                      # the full block stays shared
    bm.check()


@pytest.mark.parametrize("field,value", [("num_blocks", 0), ("block_size", -1)])
def test_bad_sizes_raise_a_value_error_naming_the_field(field, value):
    kwargs = {"num_blocks": 4, "block_size": 2, field: value}
    with pytest.raises(ValueError, match=field):
        BlockManager(**kwargs)
