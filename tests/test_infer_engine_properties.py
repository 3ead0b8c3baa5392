"""LLMEngine request handling as properties: random add / abort / failing request / step sequences over a small pool
(so the scheduler preempts) must leak no KV block, keep the block manager's invariants, and end every request —
finished, aborted, or rejected when added."""

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from minillm import Llama, ModelConfig
from minillm.infer import LLMEngine, SamplingParams

MAX_STEPS = 3000

ADD = st.tuples(st.just("add"), st.lists(st.integers(0, 3), min_size=1, max_size=12),   # few ids: prefix hits
                st.integers(1, 3), st.integers(1, 10), st.sampled_from([0.0, 1.0]), st.booleans())
OPS = st.lists(st.one_of(ADD, ADD, st.tuples(st.just("abort"), st.integers(0, 10**6)),
                         st.tuples(st.just("fail"), st.integers(1, 5)),             # a request whose sampling raises
                         st.tuples(st.just("step"), st.integers(1, 4))),
               min_size=2, max_size=25)


@pytest.fixture(scope="module")
def tiny() -> Llama:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=48, vocab_size=16, max_seq_len=24)
    return Llama(cfg).eval()


def failing_params(max_tokens: int) -> SamplingParams:
    params = SamplingParams(temperature=1.0, max_tokens=max_tokens)
    object.__setattr__(params, "temperature", float("nan"))               # past validation: multinomial raises
    return params


def check_pool(engine: LLMEngine) -> None:
    bm = engine.block_manager
    bm.check()
    held = {b for seq in engine.scheduler.running for b in bm.table(seq.seq_id)}
    assert set(bm.seqs) == {seq.seq_id for seq in engine.scheduler.running}  # only running sequences hold blocks
    assert bm.num_free + len(held) == engine.num_blocks


@settings(max_examples=50, deadline=None, database=None)
@given(ops=OPS, pool_tokens=st.integers(16, 32), block_size=st.sampled_from([1, 2, 4]),
       max_num_seqs=st.integers(2, 4), budget=st.integers(2, 16), chunked=st.booleans(), caching=st.booleans())
def test_random_add_abort_and_failing_requests_all_end_and_leak_no_block(tiny, ops, pool_tokens, block_size,
                                                                         max_num_seqs, budget, chunked, caching):
    num_blocks = -(-pool_tokens // block_size)                          # one or two requests' worth: preemptions
    engine = LLMEngine(tiny, num_blocks=num_blocks, block_size=block_size, max_num_seqs=max_num_seqs,
                       max_num_batched_tokens=budget, enable_chunked_prefill=chunked, enable_prefix_caching=caching,
                       decode_graphs="off")
    accepted: dict[int, SamplingParams] = {}
    aborted, failing = set(), set()
    for op in ops:
        if op[0] == "add":
            _, prompt, n, max_tokens, temperature, stop = op
            params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens,
                                    stop_token_ids=(0,) if stop else ())
            before = dict(engine.requests)
            try:
                accepted[engine.add_request(prompt, params)] = params
            except ValueError as err:                                  # too long for the context or the pool
                assert "max_seq_len" in str(err) or "too small" in str(err)
                assert engine.requests == before                       # a rejected request leaves no trace
        elif op[0] == "fail" and engine.block_manager.num_blocks_for(1 + op[1]) <= num_blocks:
            rid = engine.add_request([1], failing_params(op[1]))
            accepted[rid] = engine.requests[rid][0].params
            failing.add(rid)
        elif op[0] == "abort" and accepted:
            rid = sorted(accepted)[op[1] % len(accepted)]
            engine.abort_request(rid)
            aborted.add(rid)
        elif op[0] == "step":
            for _ in range(op[1]):
                engine.step()
        check_pool(engine)
    steps = 0
    while engine.has_unfinished():
        engine.step()
        check_pool(engine)
        steps += 1
        assert steps < MAX_STEPS, "the engine stopped making progress"

    event(f"preempted: {engine.scheduler.num_preemptions > 0}")          # --hypothesis-show-statistics
    event(f"a step failed: {any(s.error for seqs in engine.requests.values() for s in seqs)}")
    assert engine.block_manager.num_free == engine.num_blocks            # every block came back
    assert not engine.scheduler.running and not engine.scheduler.waiting
    for rid, params in accepted.items():
        assert engine.is_finished(rid)
        out = engine.pop_request(rid)
        reasons = {c.finish_reason for c in out.outputs}
        if rid in failing:                                             # aborted, by its failure or by the caller
            assert reasons == {"abort"} and (isinstance(out.error, RuntimeError) or rid in aborted)
        elif rid in aborted and "abort" in reasons:
            assert out.error is None                                   # aborted by the caller, not by a failure
        else:
            assert len(out.outputs) == params.n and reasons <= {"stop", "length"}
            for c in out.outputs:
                assert len(c.token_ids) == params.max_tokens if c.finish_reason == "length" \
                    else len(c.token_ids) < params.max_tokens
    assert engine.requests == {}
