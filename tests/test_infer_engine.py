"""LLMEngine (continuous batching, paged cache, parallel sampling, preemption) against ``minillm.generate``."""

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
    return [o.completions[0].token_ids for o in outs]


@pytest.mark.parametrize("kw", [
    dict(),                                                            # whole prompts, roomy pool
    dict(max_num_batched_tokens=8),                                    # chunked prefill, 8 tokens a step
    dict(chunked_prefill=False, max_num_batched_tokens=24),            # whole prefill, prompts wait for budget
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
    engine = LLMEngine(m, num_blocks=16, block_size=4, chunked_prefill=chunked)
    assert ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS)) == reference
    assert engine.scheduler.num_preemptions > 0
    engine.block_manager.check()
    assert engine.block_manager.num_free == engine.num_blocks


def test_n_samples_share_the_prompt_blocks_and_copy_on_write_the_last_one(m):
    prompt = list(range(1, 22))                                        # 21 tokens: 5 full blocks of 4 + 1 partial
    engine = LLMEngine(m, num_blocks=64, block_size=4, prefix_caching=False)
    out = engine.generate([prompt], SamplingParams(n=4, temperature=1.0, max_tokens=3), max_steps=STEPS)[0]
    assert len(out.completions) == 4 and all(len(c.token_ids) == 3 for c in out.completions)
    assert engine.block_manager.stats["cow_copies"] == 3               # every child but the last writer copies
    # shared: 6 prompt blocks + 3 copies + new blocks, far fewer than 4 private copies of the prompt (4 × 6)
    assert engine.peak_used_blocks < 4 * 6


def test_sampling_with_a_seed_is_repeatable_and_n_completions_differ(m):
    params = SamplingParams(n=4, temperature=1.0, top_k=50, top_p=0.95, max_tokens=12)
    a = LLMEngine(m, seed=3).generate(PROMPTS[:2], params, max_steps=STEPS)
    b = LLMEngine(m, seed=3).generate(PROMPTS[:2], params, max_steps=STEPS)
    assert [[c.token_ids for c in o.completions] for o in a] == [[c.token_ids for c in o.completions] for o in b]
    assert len({tuple(c.token_ids) for c in a[0].completions}) > 1


def test_a_prefix_cached_prompt_is_not_recomputed_and_gives_the_same_tokens(m, reference):
    engine = LLMEngine(m, block_size=4)
    first = ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS))
    hits = engine.block_manager.stats["prefix_hits"]
    again = ids(engine.generate(PROMPTS, GREEDY, max_steps=STEPS))
    assert first == again == reference
    assert engine.block_manager.stats["prefix_hits"] - hits >= (21 - 1) // 4 + (39 - 1) // 4


def test_stop_tokens_end_a_completion_like_generate(m, reference):
    stop = reference[0][5]
    out = LLMEngine(m).generate(PROMPTS, SamplingParams(temperature=0.0, max_tokens=20, stop=(stop,)),
                                max_steps=STEPS)
    assert ids(out) == generate(m, PROMPTS, 20, stop_tokens=[stop])
    assert out[0].completions[0].finish_reason == "stop"


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
    engine = LLMEngine(m, num_blocks=32, block_size=4, decode_graphs="static", prefix_caching=False)
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
