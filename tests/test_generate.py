"""Generation: cache on/off, padding, sampling filters and stop tokens."""

import numpy as np
import pytest
import torch

from minillm import Llama, ModelConfig, generate
from minillm.generate import sample_next, stream

PROMPTS = [[5, 17, 3, 99, 42, 8, 1], [7, 7], [64, 2, 90, 11]]


@pytest.fixture(scope="module")
def m() -> Llama:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, vocab_size=101, max_seq_len=64)
    return Llama(cfg).eval()


def test_cached_generation_gives_the_same_greedy_tokens_as_uncached(m):
    assert generate(m, PROMPTS, 12) == generate(m, PROMPTS, 12, use_cache=False)


def test_a_padded_batch_generates_what_each_prompt_generates_alone(m):
    batch = generate(m, PROMPTS, 10)
    assert batch == [generate(m, [p], 10)[0] for p in PROMPTS]
    assert all(len(out) == 10 for out in batch)


def test_greedy_equals_argmax_of_the_full_forward(m):
    prompt = PROMPTS[0]
    seq = list(prompt)
    for _ in range(5):
        seq.append(int(m(torch.tensor([seq]))[0, -1].argmax()))
    assert generate(m, [prompt], 5)[0] == seq[len(prompt):]


def test_sampling_is_repeatable_with_a_seed_and_varies_without(m):
    kw = dict(temperature=1.0, top_k=50, top_p=0.95)
    a = generate(m, PROMPTS, 10, seed=3, **kw)
    assert a == generate(m, PROMPTS, 10, seed=3, **kw)
    assert a == generate(m, PROMPTS, 10, seed=3, use_cache=False, **kw)
    assert a != generate(m, PROMPTS, 10, seed=4, **kw)


def test_top_k_of_one_and_a_tiny_top_p_are_greedy(m):
    greedy = generate(m, PROMPTS, 8)
    assert generate(m, PROMPTS, 8, temperature=0.7, top_k=1, seed=0) == greedy
    assert generate(m, PROMPTS, 8, temperature=0.7, top_p=1e-6, seed=0) == greedy


def _allowed(logits, top_k=None, top_p=None):
    """Independent reference: the set of tokens each filter keeps, by sorting in Python."""
    probs = torch.softmax(logits, -1).tolist()
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    keep = order[:top_k] if top_k else order
    if top_p is not None:
        p = [probs[i] for i in keep]
        total = sum(p)
        out, mass = [], 0.0
        for i, pi in zip(keep, p):
            out.append(i)
            mass += pi / total
            if mass >= top_p:
                break
        keep = out
    return set(keep)


@pytest.mark.parametrize("top_k, top_p", [(5, None), (None, 0.5), (10, 0.8), (None, 0.999)])
def test_sampled_tokens_stay_inside_the_top_k_top_p_set(top_k, top_p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 40) * 2
    allowed = _allowed(logits[0], top_k, top_p)
    seen = {int(sample_next(logits, 1.0, top_k, top_p, g)) for _ in range(400)}
    assert seen <= allowed
    assert len(seen) >= min(len(allowed), 3) * 0.6


def test_top_p_filter_matches_transformers():
    gen_utils = pytest.importorskip("transformers.generation.logits_process", reason="transformers not installed")
    logits = torch.randn(4, 50) * 3
    for top_p in (0.3, 0.9):
        hf = gen_utils.TopPLogitsWarper(top_p)(None, logits.clone())
        for row in range(4):
            assert {i for i in range(50) if hf[row, i] > -torch.inf} == _allowed(logits[row], None, top_p)


def test_stop_tokens_end_a_sequence_and_are_not_returned(m):
    free = generate(m, [PROMPTS[0]], 10)[0]
    stop = free[3]
    first = free.index(stop)
    assert generate(m, [PROMPTS[0]], 10, stop_tokens=[stop])[0] == free[:first]
    assert list(stream(m, PROMPTS[0], 10, stop_tokens=[stop])) == free[:first]


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompts=[]), "non-empty"),
    (dict(prompts=[[1, 2], []]), r"prompts\[1\]"),
    (dict(prompts=[[1, 500]]), "vocab_size"),
    (dict(prompts=[[1]], max_new_tokens=100), "max_seq_len"),
    (dict(prompts=[[1]], temperature=-1.0), "temperature"),
    (dict(prompts=[[1]], top_p=0.0), "top_p"),
    (dict(prompts=[[1]], top_k=0), "top_k"),
])
def test_bad_arguments_raise_naming_the_field(m, kwargs, match):
    kwargs = {"max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(m, **kwargs)


def test_numpy_integer_and_tensor_prompts_give_the_tokens_of_int_prompts(m):
    expected = generate(m, PROMPTS, 6)
    assert generate(m, [[np.int64(t) for t in p] for p in PROMPTS], 6) == expected
    assert generate(m, [np.array(p, dtype=np.int32) for p in PROMPTS], 6) == expected
    assert generate(m, [torch.tensor(p) for p in PROMPTS], 6) == expected


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(prompts=[[1, 2], [3, 4.0]]), TypeError, r"prompts\[1\]\[1\] is 4.0 \(float\)"),
    (dict(prompts=[[1, np.float32(2)]]), TypeError, r"prompts\[0\]\[1\]"),
    (dict(prompts=[torch.tensor([1.0, 2.0])]), TypeError, r"prompts\[0\]\[0\] is 1.0"),
    (dict(prompts=[[False, 2]]), TypeError, r"prompts\[0\]\[0\] is False \(bool\)"),
    (dict(prompts=[[1, 101, 500]]), ValueError, r"2 token id\(s\) outside \[0, vocab_size=101\): \[1\]=101, \[2\]=500"),
    (dict(prompts=["some text"]), ValueError, r"prompts\[0\] must be a non-empty list of token ids"),
    (dict(prompts=[[1]], temperature=float("nan")), ValueError, "temperature must be a finite number"),
    (dict(prompts=[[1]], top_p=float("nan")), ValueError, "top_p"),
    (dict(prompts=[[1]], top_k=True), ValueError, "top_k"),
])
def test_bad_token_ids_and_nan_sampling_raise_naming_the_prompt_position_or_field(m, kwargs, error, match):
    with pytest.raises(error, match=match):
        generate(m, **{"max_new_tokens": 4, **kwargs})


def test_static_shape_decoder_gives_the_same_greedy_tokens(m):
    from minillm.model.static_decode import static_greedy

    prompts = [[5, 17, 3, 99], [64, 2, 90, 11]]
    assert static_greedy(m, prompts, 9) == generate(m, prompts, 9)


def test_compiled_static_step_updates_the_cache_in_place():
    """``torch.compile`` of the static decode step must write the new token's keys/values into the cache, not copy
    each layer's whole cache and write it back every step (what indexing the 5-D cache inside the step made inductor
    do). The generated code must allocate no buffer of a layer's cache size, and decode the eager step's tokens."""
    from torch._inductor.utils import run_and_get_code

    from minillm.model.static_decode import StaticDecoder

    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=256, max_seq_len=512)
    m = Llama(cfg).eval()
    prompt = torch.randint(0, 256, (1, 40))
    eager = StaticDecoder(m, 1, 301)
    want = eager.decode(eager.prefill(prompt), 4)
    dec = StaticDecoder(m, 1, 301, compile=True)
    first = dec.prefill(prompt)
    got, codes = run_and_get_code(dec.decode, first, 4)
    assert torch.equal(got, want)
    layer_cache = "(1, 2, 301, 16)"                                       # (B, Hkv, max_seq_len, head_dim)
    allocations = [line for code in codes for line in code.splitlines() if "empty_strided" in line]
    assert allocations, "found no buffer allocations: has inductor's output format changed?"
    assert not [line for line in allocations if layer_cache in line], "the compiled step copies a layer's KV cache"
