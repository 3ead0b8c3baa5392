"""Post-training data splits, rejection sampling's choice, and a tiny end-to-end round (RM → RS → SFT → DPO → RLOO)."""

import copy
import math
import zlib
from types import SimpleNamespace

import pytest
import torch

from minillm import Llama, ModelConfig, generate
from minillm.post import (DataConfig, DPOConfig, PostTrainSpec, QualityConfig, RejectionConfig, RewardConfig,
                          RewardModel, RLOOConfig, SFTConfig, build_post_data, eval_prompt, evaluate_accuracy,
                          rejection_sample, reward_scores, run_post_training, score_response)
from minillm.post import loop
from minillm.post.data import canonical_response, extract_final_answer
from minillm.post.loop import wilson_interval
from minillm.tokenizer import train_bpe


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return build_post_data(DataConfig(n_train=24, n_dev=8, n_test=12, dialogue_fraction=0.3))


@pytest.fixture(scope="module")
def tok(data):
    texts = ["\n".join(m["content"] for m in c) for c in data.sft_chats]
    return train_bpe(texts * 4 + [f"{t.chosen} {t.rejected}" for t in data.preferences], vocab_size=400)


@pytest.fixture(scope="module")
def base(tok):
    torch.manual_seed(0)
    return Llama(ModelConfig.tiny(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=tok.vocab_size,
                                  max_seq_len=256, tie_embeddings=True)).eval()


def test_splits_are_disjoint_and_the_data_is_what_it_claims(data):
    questions = [{i.question for i in split} for split in (data.train, data.dev, data.test)]
    assert [len(q) for q in questions] == [24, 8, 12]
    assert not (questions[0] & questions[1] or questions[0] & questions[2] or questions[1] & questions[2])
    turns = [sum(m["role"] == "assistant" for m in c) for c in data.sft_chats]
    assert len(data.sft_chats) == 24 and 1 in turns and max(turns) >= 2         # instructions and dialogues
    for chat in data.sft_chats:
        assert chat[-1]["role"] == "assistant" and extract_final_answer(chat[-1]["content"])
    for t in data.preferences:
        assert score_response(t.item, t.chosen) == 1.0 and score_response(t.item, t.rejected) < 1.0
        assert t.edited in (None, canonical_response(t.item))
    assert {t.item.question for t in data.heldout_preferences} == questions[1]


def test_the_stated_answer_is_graded_not_a_later_number():
    assert extract_final_answer("The answer is -3. groups is 9.") == "-3"
    assert extract_final_answer("The answer is 42.") == "42" and extract_final_answer("The answer is 1/2") == "1/2"
    assert extract_final_answer("if the 0, 0.0 then 7") == "7" and extract_final_answer("no number") == "no number"


def test_rejection_sampling_keeps_the_best_sample_by_checker_then_reward(base, tok, data):
    rm = RewardModel(base)
    torch.nn.init.normal_(rm.head.weight)
    prompts = [eval_prompt(i) for i in data.train[:4]]

    def checker(i, text):                                                        # an arbitrary verifiable property
        return float(zlib.crc32(f"{i}:{text}".encode()) % 3 == 0)

    cfg = RejectionConfig(k=6, temperature=1.0, max_tokens=6, selector="rm+checker")
    rs = rejection_sample(base, tok, prompts, cfg, reward_model=rm, checker=checker, references=["R"] * 4)
    assert len(rs.samples) == 4 and all(len(s) == 6 for s in rs.samples)
    assert any(len(set(s)) > 1 for s in rs.samples)                              # K different samples
    rewards = reward_scores(rm, tok, [p for p in prompts for _ in range(6)], [t for s in rs.samples for t in s])
    assert torch.allclose(rs.rewards, rewards.view(4, 6), atol=1e-5)
    for i in range(4):
        correct = [j for j in range(6) if checker(i, rs.samples[i][j]) == 1.0]
        if not correct:
            assert rs.best[i] is None
        else:
            assert rs.best[i] == max(correct, key=lambda j: (rs.rewards[i, j].item(), -j))
    assert len(rs.chats) == sum(b is not None for b in rs.best)
    assert rs.stats["best_of_k"] == pytest.approx(sum(b is not None for b in rs.best) / 4)
    with pytest.raises(ValueError, match="needs a reward_model"):
        rejection_sample(base, tok, prompts, cfg, checker=checker)


def test_accuracy_is_greedy_decoding_checked_by_reasoning_gym(base, tok, data):
    result = evaluate_accuracy(base, tok, data.test, max_tokens=6)
    prompts = [tok.encode_chat(eval_prompt(i)) for i in data.test]
    outs = generate(base, prompts, 6, stop_tokens=[tok.eot_id])                 # the plain decoding loop
    texts = [tok.decode([t for t in o if t != tok.eot_id]) for o in outs]
    assert result["responses"] == texts                                          # greedy, as generate() decodes
    assert result["correct"] == [score_response(i, t) == 1.0 for i, t in zip(data.test, texts)]
    assert result["acc"] == sum(result["correct"]) / len(data.test) and result["n"] == len(data.test)


def test_accuracy_counts_exactly_the_planted_right_answers_with_their_wilson_interval(tok, data, monkeypatch):
    right = {0, 3, 4, 9}                                                         # 4 of the 12 test problems
    wrong = ["I do not know.", "The answer is 1/1000003."]
    texts = [canonical_response(item) if k in right else wrong[k % 2] for k, item in enumerate(data.test)]
    assert [score_response(i, t) == 1.0 for i, t in zip(data.test, texts)] == [k in right for k in range(12)]
    calls = []

    def planted(model, tokenizer, prompts, n, temperature, max_tokens):         # what the model "wrote"
        calls.append(dict(prompts=prompts, n=n, temperature=temperature))
        return [[SimpleNamespace(text=t)] for t in texts]

    monkeypatch.setattr(loop, "sample_completions", planted)
    result = evaluate_accuracy(None, tok, data.test, max_tokens=6)
    assert calls == [dict(prompts=[eval_prompt(i) for i in data.test], n=1, temperature=0.0)]     # greedy, once
    assert result["correct"] == [k in right for k in range(12)] and result["acc"] == 4 / 12
    assert (result["low"], result["high"]) == pytest.approx((0.13812, 0.60938), abs=1e-5)  # Wilson 1927, 4 of 12
    assert result["examples"][0] == {"question": data.test[0].question, "reference": canonical_response(data.test[0]),
                                     "response": texts[0], "correct": True}
    assert result["right_answer"] == result["correct"] and result["target"] == "answer"
    assert result["clean"] == [True] * 12


def char_trigram_embed(texts):
    """A cheap real embedding for the smoke run (MiniLM is tested in test_post_quality.py): hashed trigram counts."""
    out = torch.zeros(len(texts), 256)
    for i, t in enumerate(texts):
        for j in range(len(t) - 2):
            out[i, zlib.crc32(t[j:j + 3].encode()) % 256] += 1
    return torch.nn.functional.normalize(out, dim=-1)


def test_one_round_end_to_end_on_a_tiny_model(base, tok, data):
    before = copy.deepcopy(base.state_dict())
    spec = PostTrainSpec(
        rounds=1, rs_prompts=6, eval_max_tokens=6,
        reward=RewardConfig(steps=2, triples_per_step=4, warmup_steps=0),
        rejection=RejectionConfig(k=4, max_tokens=6, selector="rm"),             # a random model is never right
        quality=QualityConfig(quality_fraction=0.5, dedup_threshold=0.95),
        sft=SFTConfig(steps=2, examples_per_step=4, warmup_steps=0),
        dpo=DPOConfig(steps=2, pairs_per_step=4, warmup_steps=0),
        rloo=RLOOConfig(steps=1, prompts_per_step=2, k=2, max_tokens=6))
    result = run_post_training(base, tok, spec, data=data, embed=char_trigram_embed, progress=False)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())   # the base model is untouched
    (m,) = result.rounds
    assert m["rejection"]["prompts"] == 6 and m["rejection"]["kept"] == 6
    assert m["quality"]["after_quality"] == 3 and 1 <= m["quality"]["after_dedup"] <= 3
    assert m["sft_data"] == len(data.sft_chats) + m["quality"]["after_dedup"] == len(result.sft_chats)
    assert m["rm"]["n_pairs"] == sum(len(t.pairs()) for t in data.heldout_preferences)  # every ranked pair, once
    assert math.isclose(m["rm"]["accuracy"] * m["rm"]["n_pairs"], round(m["rm"]["accuracy"] * m["rm"]["n_pairs"]))
    assert set(m["eval"]) == {"previous", "sft", "dpo", "rloo"}
    dev = {name: e["dev"]["acc"] for name, e in m["eval"].items()}
    assert dev[m["best"]] == max(dev.values())
    table = result.accuracy_table()
    assert [(r["round"], r["model"]) for r in table] == [(0, "base"), (1, "sft"), (1, "dpo"), (1, "rloo")]
    for row in table:                                     # a share of the 12 test problems, and its Wilson interval
        assert row["n"] == 12 and math.isclose(row["acc"] * 12, round(row["acc"] * 12))
        assert (row["low"], row["high"]) == wilson_interval(round(row["acc"] * 12), 12)
    assert isinstance(result.model, Llama)
