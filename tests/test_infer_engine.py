"""LLMEngine (continuous batching, paged cache, parallel sampling, preemption) against ``minillm.generate``."""

import numpy as np
import pytest
import torch

from minillm import Llama, ModelConfig, generate
from minillm.infer import LLMEngine, SamplingParams

PROMPTS = [[5, 17, 3, 99, 42, 8, 1] * 3, [7, 7], [64, 2, 90, 11], list(range(1, 40))]
GREEDY = SamplingParams(temperature=0.0, max_tokens=20)
STEPS = 2000                                     # every engine run here is bounded: a hang fails, it never blocks


@pytest.fixture(scope="module")
def m() -> Llama:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, vocab_size=101, max_seq_len=128)
    return Llama(cfg).eval()


@pytest.fixture(scope="module")
def reference(m):
    return generate(m, PROMPTS, 20)


def ids(outs):
    return [o.outputs[0].token_ids for o in outs]


@pytest.mark.parametrize("kw", [
    dict(),                                                            # whole prompts, roomy pool
    dict(max_num_batched_tokens=8),                                    # chunked prefill, 8 tokens a step
    dict(enable_chunked_prefill=False, max_num_batched_tokens=24),     # whole prefill, prompts wait for budget
    dict(block_size=1), dict(block_size=5, max_num_seqs=2),
], ids=["default", "chunked", "whole-prefill", "block1", "block5-two-seqs"])
def test_greedy_engine_equals_minillm_generate_token_for_token(m, reference, kw):
    engine = LLMEngine(m, **kw)
    assert ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS)) == reference


def test_phase_seconds_account_for_the_steps_and_no_more(m):
    import time

    engine = LLMEngine(m)
    t = time.perf_counter()
    engine.generate(PROMPTS, GREEDY, max_steps=STEPS)
    wall = time.perf_counter() - t
    phases = engine.phase_seconds
    assert set(phases) == {"host", "model", "sample"} and all(v > 0 for v in phases.values())
    assert sum(phases.values()) <= wall


@pytest.mark.parametrize("chunked", [True, False])
def test_a_full_pool_preempts_by_recomputation_and_still_finishes_with_the_same_tokens(m, reference, chunked):
    engine = LLMEngine(m, num_blocks=16, block_size=4, enable_chunked_prefill=chunked)
    assert ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS)) == reference
    assert engine.scheduler.num_preemptions > 0
    engine.block_manager.check()
    assert engine.block_manager.num_free == engine.num_blocks


def test_n_samples_share_the_prompt_blocks_and_copy_on_write_the_last_one(m):
    prompt = list(range(1, 22))                                        # 21 tokens: 5 full blocks of 4 + 1 partial
    engine = LLMEngine(m, num_blocks=64, block_size=4, enable_prefix_caching=False)
    out = engine.generate([prompt], SamplingParams(n=4, temperature=1.0, max_tokens=3), max_steps=STEPS)[0]
    assert len(out.outputs) == 4 and all(len(c.token_ids) == 3 for c in out.outputs)
    assert engine.block_manager.stats["cow_copies"] == 3               # every child but the last writer copies
    # shared: 6 prompt blocks + 3 copies + new blocks, far fewer than 4 private copies of the prompt (4 × 6)
    assert engine.peak_used_blocks < 4 * 6


def test_sampling_with_a_seed_is_repeatable_and_n_completions_differ(m):
    params = SamplingParams(n=4, temperature=1.0, top_k=50, top_p=0.95, max_tokens=12)
    a = LLMEngine(m, seed=3).generate(PROMPTS[:2], params, max_steps=STEPS)
    b = LLMEngine(m, seed=3).generate(PROMPTS[:2], params, max_steps=STEPS)
    assert [[c.token_ids for c in o.outputs] for o in a] == [[c.token_ids for c in o.outputs] for o in b]
    assert len({tuple(c.token_ids) for c in a[0].outputs}) > 1


def test_a_prefix_cached_prompt_is_not_recomputed_and_gives_the_same_tokens(m, reference):
    engine = LLMEngine(m, block_size=4)
    first = ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS))
    hits = engine.block_manager.stats["prefix_hits"]
    again = ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS))
    assert first == again == reference
    assert engine.block_manager.stats["prefix_hits"] - hits >= (21 - 1) // 4 + (39 - 1) // 4


def test_stop_tokens_end_a_completion_like_generate(m, reference):
    stop = reference[0][5]
    out = LLMEngine(m).generate(PROMPTS, SamplingParams(temperature=0.0, max_tokens=20, stop_token_ids=(stop,)),
                                max_steps=STEPS)
    assert ids(out) == generate(m, PROMPTS, 20, stop_tokens=[stop])
    assert out[0].outputs[0].finish_reason == "stop"


def test_streaming_yields_the_generated_tokens_in_order(m, reference):
    got = [[] for _ in PROMPTS]
    for event in LLMEngine(m).stream(PROMPTS, GREEDY, max_steps=STEPS):
        if event.token_id is not None:
            got[event.request_id].append(event.token_id)
    assert got == reference


def test_too_long_prompts_and_too_small_pools_raise_clear_errors(m):
    engine = LLMEngine(m, num_blocks=4, block_size=4)
    with pytest.raises(ValueError, match="max_seq_len"):
        engine.generate([[1] * 120], SamplingParams(max_tokens=20))
    with pytest.raises(ValueError, match="too small"):
        engine.generate([[1] * 10], SamplingParams(max_tokens=10))
    assert not engine.has_unfinished()                                  # nothing half-queued
    with pytest.raises(ValueError, match="tokenizer"):
        engine.generate(["text"], SamplingParams())


@pytest.mark.parametrize("field,value", [("n", 0), ("temperature", -1.0), ("top_k", 0), ("top_p", 1.5),
                                         ("max_tokens", 0)])
def test_bad_sampling_params_raise_a_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


@pytest.mark.parametrize("field,value", [
    ("temperature", float("nan")), ("temperature", float("inf")), ("temperature", "0.7"), ("n", True), ("n", 2.0),
    ("top_p", float("nan")), ("top_p", 0.0), ("top_k", True), ("max_tokens", 1.5), ("stop_token_ids", 3.0),
    ("stop", 3.0), ("stop", [""]), ("seed", 1.5), ("seed", True),
])
def test_nan_inf_bool_and_float_sampling_params_are_rejected_when_built_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"SamplingParams.{field} must be"):
        SamplingParams(**{field: value})


def test_numpy_integer_sampling_params_are_accepted_as_ints():
    p = SamplingParams(n=np.int64(2), top_k=np.int32(5), max_tokens=np.int64(3), stop_token_ids=[np.int64(7)])
    assert (p.n, p.top_k, p.max_tokens, p.stop_token_ids) == (2, 5, 3, (7,)) and type(p.n) is int


def nan_params(max_tokens=20):
    """Params that slip past validation (as a bug or a diverged model would): sampling raises in multinomial."""
    params = SamplingParams(temperature=1.0, max_tokens=max_tokens)
    object.__setattr__(params, "temperature", float("nan"))
    return params


def assert_empty(engine):
    assert not engine.has_unfinished() and engine.requests == {}
    engine.block_manager.check()
    assert engine.block_manager.num_free == engine.num_blocks


def test_a_request_whose_step_fails_is_aborted_and_later_requests_get_the_tokens_of_generate(m, reference):
    engine = LLMEngine(m, num_blocks=32, block_size=4)
    with pytest.raises(RuntimeError, match=r"prompts\[0\] was aborted") as error:
        engine.generate([PROMPTS[1]], nan_params(), max_steps=STEPS)
    assert isinstance(error.value.__cause__, RuntimeError)                # multinomial's own error, chained
    assert_empty(engine)
    assert ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS)) == reference


def test_a_failing_request_in_a_batch_does_not_stop_the_others(m, reference):
    engine = LLMEngine(m, num_blocks=32, block_size=4)
    got, aborted = [[] for _ in PROMPTS], []
    params = [nan_params()] + [GREEDY] * (len(PROMPTS) - 1)
    for event in engine.stream([PROMPTS[0]] + PROMPTS[1:], params, max_steps=STEPS):
        if event.finish_reason == "abort":
            aborted.append((event.request_id, type(event.error)))
        elif event.token_id is not None:
            got[event.request_id].append(event.token_id)
    assert aborted == [(0, RuntimeError)]
    assert got[1:] == reference[1:]
    assert_empty(engine)


def test_a_failing_model_step_aborts_the_batch_and_the_engine_serves_the_next_one(m, reference, monkeypatch):
    engine = LLMEngine(m, num_blocks=32, block_size=4)
    forward = engine.runner.forward
    monkeypatch.setattr(engine.runner, "forward", lambda *a: (_ for _ in ()).throw(MemoryError("out of memory")))
    with pytest.raises(RuntimeError, match="MemoryError: out of memory"):
        engine.generate(PROMPTS[:2], GREEDY, max_steps=STEPS)
    assert_empty(engine)
    monkeypatch.setattr(engine.runner, "forward", forward)
    assert ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS)) == reference


def test_abort_request_frees_a_queued_or_running_request(m, reference):
    engine = LLMEngine(m, num_blocks=32, block_size=4)
    running = engine.add_request(PROMPTS[0], SamplingParams(n=3, temperature=1.0, max_tokens=20))
    engine.step()
    queued = engine.add_request(PROMPTS[1], GREEDY)
    assert {e.finish_reason for e in engine.abort_request(running)} == {"abort"}
    engine.abort_request(queued)
    out = engine.pop_request(running)
    assert len(out.outputs) == 3 and {c.finish_reason for c in out.outputs} == {"abort"}
    assert engine.pop_request(queued).outputs[0].token_ids == []
    assert_empty(engine)
    assert ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS)) == reference


def test_a_finished_streamed_request_leaves_the_engine_and_keeps_no_reference(m):
    import gc
    import weakref

    engine = LLMEngine(m, num_blocks=32, block_size=4)
    lengths = [3, 12]
    refs, seen_gone = [], []
    stream = engine.stream(PROMPTS[:2], [SamplingParams(temperature=0.0, max_tokens=n) for n in lengths],
                           max_steps=STEPS)
    for event in stream:
        refs += [weakref.ref(s) for seqs in engine.requests.values() for s in seqs]
        if event.finish_reason is not None:
            seen_gone.append(len(engine.requests))                        # freed as soon as it finished
    assert seen_gone == [1, 0]
    del event, stream
    gc.collect()
    assert refs and all(r() is None for r in refs)
    assert_empty(engine)


def test_closing_a_stream_early_aborts_and_frees_its_requests(m, reference):
    engine = LLMEngine(m, num_blocks=32, block_size=4)
    stream = engine.stream(PROMPTS, GREEDY, max_steps=STEPS)
    next(stream)
    stream.close()
    assert_empty(engine)
    with pytest.raises(RuntimeError, match="max_steps=2"):
        engine.generate(PROMPTS, GREEDY, max_steps=2)
    assert_empty(engine)                                                # nothing left to fail the next call
    assert ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS)) == reference


def test_numpy_integer_prompts_give_the_same_tokens_and_tensor_prompts_too(m, reference):
    engine = LLMEngine(m)
    as_numpy = [[np.int64(t) for t in p] for p in PROMPTS]
    assert ids(engine.generate(as_numpy, GREEDY, max_steps=STEPS)) == reference
    assert ids(engine.generate([np.array(p) for p in PROMPTS], GREEDY, max_steps=STEPS)) == reference
    assert ids(engine.generate([torch.tensor(p) for p in PROMPTS], GREEDY, max_steps=STEPS)) == reference


@pytest.mark.parametrize("bad, error, match", [
    (7.0, TypeError, r"prompts\[1\]\[2\] is 7.0 \(float\)"),
    (True, TypeError, r"prompts\[1\]\[2\] is True \(bool\)"),
    (101, ValueError, r"prompts\[1\] has 1 token id\(s\) outside \[0, vocab_size=101\): \[2\]=101"),
    (-1, ValueError, r"\[2\]=-1"),
])
def test_bad_token_ids_are_rejected_naming_prompt_position_and_vocab(m, bad, error, match):
    prompts = [[1, 2, 3], [4, 5, bad, 6]]
    engine = LLMEngine(m)
    with pytest.raises(error, match=match):
        engine.generate(prompts, GREEDY, max_steps=STEPS)
    assert_empty(engine)
    with pytest.raises(error, match=match):
        generate(m, prompts, 4)                                          # the same validator


def test_params_that_are_not_sampling_params_raise_a_type_error(m):
    with pytest.raises(TypeError, match="SamplingParams"):
        LLMEngine(m).generate([[1, 2]], {"temperature": 0.0})


@pytest.mark.parametrize("field,value", [("block_size", 0), ("max_num_seqs", 0), ("attn_impl", "flash")])
def test_bad_engine_config_raises_a_value_error_naming_the_field(m, field, value):
    with pytest.raises(ValueError, match=field):
        LLMEngine(m, **{field: value})


@pytest.mark.parametrize("kw", [
    dict(), dict(num_blocks=16, block_size=4), dict(block_size=5, max_num_seqs=2), dict(max_num_batched_tokens=8),
], ids=["default", "preempting", "block5-two-seqs", "chunked"])
def test_static_decode_steps_give_the_tokens_of_generate(m, reference, kw):
    # the padded step the CUDA graphs replay, run eagerly; prompts finish at different lengths so the batch shrinks
    # through sizes that need padding rows (3 -> 4)
    lengths = [20, 7, 13, 3]
    engine = LLMEngine(m, decode_graphs="static", **kw)
    params = [SamplingParams(temperature=0.0, max_tokens=n) for n in lengths]
    assert ids(engine.generate(PROMPTS, params, max_steps=STEPS)) == [r[:n] for r, n in zip(reference, lengths)]
    assert engine.runner.graphs.num_runs > 0                           # the static path ran, not only the ragged one
    engine.block_manager.check()


def test_padding_rows_of_a_static_decode_step_write_only_the_scratch_block(m):
    engine = LLMEngine(m, num_blocks=32, block_size=4, decode_graphs="static", enable_prefix_caching=False)
    for prompt in PROMPTS[:3]:
        engine.add_request(prompt, SamplingParams(temperature=0.0, max_tokens=5))
    while any(s.num_computed < s.num_tokens - 1 for s in engine.scheduler.running) or engine.scheduler.waiting:
        engine.step()                                                   # prefill until the next step is pure decode
    before_k, before_v = engine.runner.k_cache.clone(), engine.runner.v_cache.clone()
    runs = engine.runner.graphs.num_runs
    engine.step()                                                       # 3 decodes, padded to a batch of 4
    assert engine.runner.graphs.num_runs == runs + 1
    written = {engine.block_manager.table(s.seq_id)[(s.num_computed - 1) // 4] * 4 + (s.num_computed - 1) % 4
               for s in engine.scheduler.running}
    assert len(written) == 3
    scratch = engine.num_blocks                                         # the pool's extra block
    for before, after in ((before_k, engine.runner.k_cache), (before_v, engine.runner.v_cache)):
        changed = (before != after).flatten(3).any(-1)                  # (layers, blocks + 1, block_size)
        slots = {int(b) * 4 + int(o) for b, o in changed.any(0).nonzero().tolist()}
        assert slots - written <= set(range(scratch * 4, scratch * 4 + 4))
        assert written <= slots


def test_cuda_decode_graphs_need_a_gpu_and_a_known_mode(m):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"decode_graphs='cuda'\) needs the model on a CUDA device"):
            LLMEngine(m, decode_graphs="cuda")
    with pytest.raises(ValueError, match="decode_graphs"):
        LLMEngine(m, decode_graphs="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the Triton decode kernel)")
def test_on_cuda_the_engine_with_the_triton_kernel_equals_minillm_generate(m, reference):
    pytest.importorskip("triton")
    gpu = Llama(m.cfg).to("cuda").eval()
    gpu.load_state_dict(m.state_dict())
    expected = generate(gpu, PROMPTS, 20)
    engine = LLMEngine(gpu, num_blocks=16, block_size=4, attn_impl="triton")   # preempts, CoW-free, all paths
    assert ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS)) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (graph capture, the Triton decode kernel)")
@pytest.mark.parametrize("attn_impl", ["triton", "torch"])
def test_on_cuda_replayed_decode_graphs_give_the_tokens_of_generate(m, attn_impl):
    if attn_impl == "triton":
        pytest.importorskip("triton")
    gpu = Llama(m.cfg).to("cuda").eval()
    gpu.load_state_dict(m.state_dict())
    lengths = [20, 7, 13, 3]
    expected = [r[:n] for r, n in zip(generate(gpu, PROMPTS, 20), lengths)]
    params = [SamplingParams(temperature=0.0, max_tokens=n) for n in lengths]
    for kw in (dict(), dict(num_blocks=16, block_size=4)):                      # roomy, and preempting
        engine = LLMEngine(gpu, attn_impl=attn_impl, decode_graphs="cuda", **kw)
        assert ids(engine.generate(PROMPTS, params, max_steps=STEPS)) == expected
        assert engine.runner.graphs.graphs and engine.runner.graphs.num_runs > 0
