"""vLLM's names and habits: ``SamplingParams(stop=[str], stop_token_ids, seed)``, ``RequestOutput.outputs``
of ``CompletionOutput``s, ``enable_prefix_caching``, ``LLM(model=...)``; each against an independent reference
(a run without the stop string, ``tokenizer.decode``, ``minillm.generate``)."""

import pytest
import torch

from minillm import Llama, ModelConfig, generate
from minillm.infer import LLM, LLMEngine, RequestOutput, SamplingParams
from minillm.model.load import save_pretrained
from minillm.tokenizer import train_bpe

TEXTS = ["héllo wörld, 日本 and plain ascii text here, the quick brown fox"] * 30
STEPS = 2000


@pytest.fixture(scope="module")
def tok():
    return train_bpe(TEXTS, vocab_size=320, min_frequency=1)


@pytest.fixture(scope="module")
def m(tok) -> Llama:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, vocab_size=tok.vocab_size,
                           max_seq_len=128)
    return Llama(cfg).eval()


def sampled(engine, prompt, max_tokens=40, seed=0, **kw):
    params = SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=seed, ignore_eos=True, **kw)
    return engine.generate([prompt], params, max_steps=STEPS)[0].outputs[0]


def spanning_stop(tok, ids):
    """A 2-character stop string whose first occurrence in the decoded output straddles two tokens, and the number
    of tokens sampled when it completes."""
    pieces = [tok.decode(ids[:i + 1])[len(tok.decode(ids[:i])):] for i in range(len(ids))]
    for k in range(len(ids) - 1):
        if pieces[k] and pieces[k + 1] and "\ufffd" not in pieces[k] + pieces[k + 1]:
            stop = pieces[k][-1] + pieces[k + 1][0]
            m = next(m for m in range(1, len(ids) + 1) if stop in tok.decode(ids[:m]))
            if m == k + 2:                                    # its first occurrence is this straddling one
                return stop, m
    pytest.fail("no straddling stop string in the reference output")


def test_a_stop_string_spanning_two_tokens_ends_the_completion_and_is_cut_from_the_text(m, tok):
    engine = LLMEngine(m, tokenizer=tok)
    ref = sampled(engine, "the quick")
    assert ref.finish_reason == "length" and ref.text == tok.decode(ref.token_ids)
    stop, n_tokens = spanning_stop(tok, ref.token_ids)
    out = sampled(engine, "the quick", stop=[stop])
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert out.token_ids == ref.token_ids[:n_tokens]            # the tokens that spelled it stay (as vLLM)
    assert out.text == ref.text[:ref.text.index(stop)] and stop not in out.text
    kept = sampled(engine, "the quick", stop=[stop], include_stop_str_in_output=True)
    assert kept.text == ref.text[:ref.text.index(stop) + len(stop)]


def test_streamed_text_never_shows_the_start_of_a_stop_string(m, tok):
    engine = LLMEngine(m, tokenizer=tok)
    ref = sampled(engine, "the quick")
    stop, _ = spanning_stop(tok, ref.token_ids)
    params = SamplingParams(temperature=1.0, max_tokens=40, seed=0, ignore_eos=True, stop=[stop, "zzzz"])
    events = list(engine.stream(["the quick"], params, max_steps=STEPS))
    assert "".join(e.text for e in events) == ref.text[:ref.text.index(stop)]
    assert events[-1].finish_reason == "stop" and not engine.requests and not engine.prompts


def test_a_stop_string_in_the_prompt_does_not_stop_the_completion(m, tok):
    engine = LLMEngine(m, tokenizer=tok)
    prompt = "héllo wörld, 日本 and"
    ref = sampled(engine, prompt, max_tokens=12)
    assert "日本" not in ref.text and "日本" in prompt
    out = sampled(engine, prompt, max_tokens=12, stop=["日本"])
    assert out.finish_reason == "length" and out.token_ids == ref.token_ids and out.text == ref.text


def test_a_stop_token_id_ends_the_completion_and_is_left_out(m, tok):
    engine = LLMEngine(m, tokenizer=tok)
    ref = sampled(engine, "the quick")
    stop = ref.token_ids[7]
    out = sampled(engine, "the quick", stop_token_ids=[stop])
    first = ref.token_ids.index(stop)
    assert out.token_ids == ref.token_ids[:first] and out.finish_reason == "stop" and out.stop_reason == stop
    assert out.text == tok.decode(ref.token_ids[:first])


def test_a_seed_gives_the_same_samples_whatever_else_is_in_the_batch(m, tok):
    alone = sampled(LLMEngine(m, tokenizer=tok), "the quick", seed=7).token_ids
    engine = LLMEngine(m, tokenizer=tok, seed=123, max_num_batched_tokens=16)     # other requests, chunked prefill
    prompts = ["héllo wörld", "the quick", "plain ascii text here, the quick brown fox"]
    params = [SamplingParams(temperature=1.0, max_tokens=40, n=3, ignore_eos=True),
              SamplingParams(temperature=1.0, max_tokens=40, seed=7, ignore_eos=True),
              SamplingParams(temperature=0.7, max_tokens=30, seed=1, ignore_eos=True)]
    outs = engine.generate(prompts, params, max_steps=STEPS)
    assert outs[1].outputs[0].token_ids == alone
    assert sampled(LLMEngine(m, tokenizer=tok), "the quick", seed=8).token_ids != alone


def test_n_completions_are_indexed_and_completion_i_of_a_seeded_request_uses_seed_plus_i(m, tok):
    engine = LLMEngine(m, tokenizer=tok)
    out = engine.generate(["the quick"], SamplingParams(n=3, temperature=1.0, max_tokens=20, seed=5,
                                                        ignore_eos=True), max_steps=STEPS)[0]
    assert [c.index for c in out.outputs] == [0, 1, 2]
    assert [c.token_ids for c in out.outputs] == [sampled(engine, "the quick", 20, seed=5 + i).token_ids
                                                  for i in range(3)]
    assert len({tuple(c.token_ids) for c in out.outputs}) == 3


def test_request_output_carries_vllms_fields(m, tok):
    engine = LLMEngine(m, tokenizer=tok)
    ids = tok.encode("the quick")
    text_out, ids_out = engine.generate(["the quick", ids], SamplingParams(temperature=0.0, max_tokens=4,
                                                                           ignore_eos=True))
    assert isinstance(text_out, RequestOutput) and text_out.finished and text_out.request_id != ids_out.request_id
    assert (text_out.prompt, text_out.prompt_token_ids) == ("the quick", ids)
    assert (ids_out.prompt, ids_out.prompt_token_ids) == (None, ids)
    assert text_out.outputs[0].token_ids == ids_out.outputs[0].token_ids == generate(m, [ids], 4)[0]
    assert text_out.outputs[0].text == tok.decode(ids_out.outputs[0].token_ids)


def test_engine_generate_takes_vllms_keyword_sampling_params(m, tok):
    out = LLMEngine(m, tokenizer=tok).generate(prompts=["the quick"],
                                               sampling_params=SamplingParams(temperature=0.0, max_tokens=3))
    assert len(out[0].outputs[0].token_ids) <= 3


def test_token_ids_in_stop_get_an_error_naming_stop_token_ids():
    with pytest.raises(ValueError, match=r"stop_token_ids=\[7, 9\]"):
        SamplingParams(stop=[7, 9])
    assert SamplingParams(stop="\n").stop == ("\n",)


def test_stop_strings_without_a_tokenizer_are_refused_when_added(m):
    with pytest.raises(ValueError, match="tokenizer"):
        LLMEngine(m).generate([[1, 2, 3]], SamplingParams(stop=["x"]))


@pytest.mark.parametrize("old,new", [("prefix_caching", "enable_prefix_caching"),
                                     ("chunked_prefill", "enable_chunked_prefill")])
def test_the_old_config_names_raise_an_error_naming_vllms(m, old, new):
    with pytest.raises(TypeError, match=new):
        LLMEngine(m, **{old: False})


def test_prefix_caching_off_is_honoured(m, tok):
    engine = LLMEngine(m, tokenizer=tok, block_size=4, enable_prefix_caching=False)
    p = SamplingParams(temperature=0.0, max_tokens=2)
    engine.generate(["the quick brown fox jumps"] * 2, p)
    assert engine.block_manager.stats["prefix_hits"] == 0
    cached = LLMEngine(m, tokenizer=tok, block_size=4)
    cached.generate(["the quick brown fox jumps"], p)
    cached.generate(["the quick brown fox jumps"], p)
    assert cached.block_manager.stats["prefix_hits"] > 0


@pytest.mark.parametrize("make", [LLM, LLMEngine])
def test_an_unknown_model_name_lists_the_valid_names(make):
    with pytest.raises(ValueError, match="smollm2"):
        make(model="no-such-model")


def test_llm_serves_a_hugging_face_folder_like_generate(m, tok, tmp_path):
    save_pretrained(m, tok, tmp_path / "hf")
    llm = LLM(model=str(tmp_path / "hf"), enable_prefix_caching=False)
    outs = llm.generate("the quick", SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True))
    assert len(outs) == 1 and outs[0].prompt == "the quick"
    assert outs[0].outputs[0].token_ids == generate(m, [tok.encode("the quick")], 6)[0]
    assert LLMEngine(str(tmp_path / "hf")).tokenizer.vocab_size == tok.vocab_size
