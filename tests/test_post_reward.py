"""The reward model: scalar at the last token, three-way ranked data, packed ranked rows equal separate passes."""

import random

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.post import (PreferenceTriple, RewardConfig, RewardModel, collate_rows, pair_accuracy, ranked_row,
                          reward_scores, train_reward_model)
from minillm.post.data import canonical_response, is_correct, synthetic_preference
from minillm.post.reward_model import prompt_and_responses
from minillm.eval.math import MathItem
from minillm.tokenizer import train_bpe

PROMPT = [{"role": "user", "content": "What is 3 + 4?"}]
TRIPLE = PreferenceTriple(PROMPT, chosen="7 i think", rejected="The answer is 8.", edited="The answer is 7.")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok():
    return train_bpe(["What is 3 + 4? The answer is 7. i think hmm next question user assistant"] * 30, vocab_size=300)


@pytest.fixture(scope="module")
def base(tok):
    torch.manual_seed(0)
    model = Llama(ModelConfig.tiny(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=tok.vocab_size,
                                   max_seq_len=128, tie_embeddings=True))
    return model.eval()


@pytest.fixture(scope="module")
def rm(base):
    rm = RewardModel(base)
    torch.nn.init.normal_(rm.head.weight, std=1.0)                  # a non-trivial head (it starts at zero)
    torch.nn.init.normal_(rm.trunk.layers[0].attention.wqkv.weight, std=0.3)   # ... and context-dependent attention
    return rm.eval()


def test_three_way_ranking_gives_three_pairs_best_first():
    assert TRIPLE.ranked() == ["The answer is 7.", "7 i think", "The answer is 8."]
    assert TRIPLE.pairs() == [("The answer is 7.", "7 i think"), ("The answer is 7.", "The answer is 8."),
                              ("7 i think", "The answer is 8.")]
    two = PreferenceTriple(PROMPT, chosen="7", rejected="8")
    assert two.pairs() == [("7", "8")]


def test_synthetic_triples_are_ranked_by_the_checker_then_by_style():
    entry = {"question": "Calculate 3 + 4.", "answer": "7", "metadata": {"expression": "3 + 4"}}
    item = MathItem("basic_arithmetic", 0, "Calculate 3 + 4.", "7", entry)
    for seed in range(20):
        t = synthetic_preference(item, random.Random(seed))
        assert t.edited == canonical_response(item) and is_correct(item, t.edited)
        assert is_correct(item, t.chosen) and t.chosen != t.edited                # right, carelessly written
        assert not is_correct(item, t.rejected)


def test_reward_is_the_head_applied_to_the_last_tokens_hidden_state(rm, tok):
    ids = prompt_and_responses(tok, PROMPT, ["The answer is 7."])
    seq = ids[0] + ids[1][0]
    with torch.no_grad():
        h = rm.trunk(torch.tensor([seq]))                                        # (1, T, dim): lm_head removed
        assert h.shape[-1] == rm.cfg.dim
        expected = rm.head(h[0, -1]).item()
    assert rm.score([seq]).item() == pytest.approx(expected, rel=1e-5)
    assert seq[-1] == tok.eot_id                                                 # read at the end of the turn


def test_a_packed_ranked_row_gives_each_response_the_reward_it_gets_alone(rm, tok):
    prompt_ids, responses = prompt_and_responses(tok, TRIPLE.prompt, TRIPLE.ranked())
    rows = [ranked_row(prompt_ids, responses, torch.Generator().manual_seed(s)) for s in range(3)]
    rows.append(ranked_row(prompt_ids, responses[:2]))                          # a shorter row, padded
    batch = collate_rows(rows, pad_id=tok.eos_id)
    with torch.no_grad():
        packed = rm(batch["tokens"], batch["ends"], batch["positions"], batch["mask"])   # (4, 3)
    alone = rm.score([prompt_ids + r for r in responses])                        # (3,): one sequence each
    for b, row in enumerate(rows):
        for k, rank in enumerate(row.ranks):
            assert packed[b, k].item() == pytest.approx(alone[rank].item(), abs=1e-4)
    assert batch["ends"][3, 2] == -1 and packed[3, 2] == 0
    assert len({tuple(r.ranks) for r in rows[:3]}) > 1                          # responses placed in shuffled orders


def test_without_the_row_mask_responses_would_see_each_other(rm, tok):
    prompt_ids, responses = prompt_and_responses(tok, TRIPLE.prompt, TRIPLE.ranked())
    batch = collate_rows([ranked_row(prompt_ids, responses)], pad_id=tok.eos_id)
    with torch.no_grad():
        leaky = rm(batch["tokens"], batch["ends"], batch["positions"])          # plain causal mask
    alone = rm.score([prompt_ids + r for r in responses])
    assert abs(leaky[0, 2].item() - alone[2].item()) > 1e-3                    # the last response read the others


def test_training_the_reward_model_leaves_the_base_model_untouched_and_scores_pairs(base, tok):
    before = {k: v.clone() for k, v in base.state_dict().items()}
    rm, history = train_reward_model(base, tok, [TRIPLE] * 4, RewardConfig(steps=12, triples_per_step=4, lr=1e-3,
                                                                         warmup_steps=0, final_lr=1e-3))
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert history[-1]["loss"] < history[0]["loss"]                             # learned the one triple
    acc = pair_accuracy(rm, tok, [TRIPLE])
    scores = reward_scores(rm, tok, [PROMPT] * 3, TRIPLE.ranked()).tolist()
    expected = sum(scores[i] > scores[j] for i, j in [(0, 1), (0, 2), (1, 2)]) / 3
    assert acc["n_pairs"] == 3 and acc["accuracy"] == pytest.approx(expected)
    assert acc["chosen_vs_rejected"] == float(scores[1] > scores[2])
