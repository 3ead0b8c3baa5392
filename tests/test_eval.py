"""Evaluation: log-likelihood multiple choice on hand-checked toy models, the cloze and maths benchmarks (determinism,
held-out splits disjoint from training)."""

import re
from collections import Counter

import pytest
import torch
from torch import nn

from minillm.eval import (ChoiceItem, arithmetic_choice_benchmark, cloze_benchmark, extract_answer, is_held_out,
                          math_benchmark, option_logprobs, score_choices, split_documents, training_questions,
                          word_counts)

VOCAB = 16


class FixedLogits(nn.Module):
    """A fake LM whose next-token distribution is ``softmax(bias)`` at every position, whatever the input."""

    def __init__(self, bias):
        super().__init__()
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, tokens, doc_ids=None):
        return self.bias.expand(*tokens.shape, -1)                          # (B, T, vocab)


class CharTokenizer:
    """Token id = position of the character in ``ALPHABET`` (+1); BOS = 0."""

    ALPHABET = " ABCDxyz?"
    bos_id = 0

    def encode(self, text):
        return [self.ALPHABET.index(c) + 1 for c in text]


def test_option_logprobs_are_the_sum_of_the_option_token_log_probabilities():
    bias = torch.randn(VOCAB, generator=torch.Generator().manual_seed(0))
    logp = torch.log_softmax(bias, -1).double()
    got = option_logprobs(FixedLogits(bias), [0, 5, 6], [[3], [4, 7], [1, 1, 2]])
    want = torch.stack([logp[3], logp[4] + logp[7], 2 * logp[1] + logp[2]])
    torch.testing.assert_close(got, want)


def test_option_logprobs_depend_on_the_context_like_a_single_forward_pass():
    torch.manual_seed(0)
    from minillm import Llama, ModelConfig
    model = Llama(ModelConfig.tiny(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32, vocab_size=VOCAB))
    context, options = [0, 3, 5, 2], [[7], [8, 9, 10], [4, 4]]
    got = option_logprobs(model, context, options)
    for i, option in enumerate(options):                                    # each row alone, unpadded
        row = torch.tensor([context + option])
        with torch.no_grad():
            logp = torch.log_softmax(model(row[:, :-1]).double(), -1)[0]    # (T, vocab)
        n = len(context) - 1
        want = sum(logp[n + j, t] for j, t in enumerate(option))
        assert float(got[i]) == pytest.approx(float(want), abs=1e-5)


def test_a_model_that_prefers_token_B_answers_B_every_time():
    tok = CharTokenizer()
    bias = torch.zeros(VOCAB)
    bias[tok.encode("B")[0]] = 5.0                                          # B is e^5 times likelier than others
    items = [ChoiceItem("x?", (" A", " B", " C", " D"), answer=1),
             ChoiceItem("y?", (" B", " A", " C", " D"), answer=0),
             ChoiceItem("z?", (" A", " C", " D", " B"), answer=0)]          # the last one is answered wrong
    result = score_choices(FixedLogits(bias), tok, items)
    assert result["predictions"] == [1, 0, 3] and result["predictions_norm"] == [1, 0, 3]
    assert result["acc"] == pytest.approx(2 / 3) and result["chance"] == 0.25 and result["n"] == 3


def test_length_normalisation_stops_short_options_winning_by_length():
    tok = CharTokenizer()
    bias = torch.zeros(VOCAB)
    bias[tok.encode("A")[0]] = 2.0
    # " A" costs log p(space) + log p(A); " AAAA" pays four more likely tokens: the sum prefers the short option,
    # the per-byte average prefers the long one (its tokens are mostly the likely "A").
    item = ChoiceItem("x?", (" B", " AAAA"), answer=1)
    logp = torch.log_softmax(bias, -1)
    space, a, b = (float(logp[tok.encode(c)[0]]) for c in " AB")
    assert space + b > space + 4 * a and (space + 4 * a) / 5 > (space + b) / 2      # the hand check
    result = score_choices(FixedLogits(bias), tok, [item])
    assert result["acc"] == 0.0 and result["acc_norm"] == 1.0


def test_long_contexts_are_cut_from_the_left_to_fit_max_len():
    bias = torch.randn(VOCAB, generator=torch.Generator().manual_seed(1))
    model = FixedLogits(bias)
    full = option_logprobs(model, list(range(1, 15)), [[2, 3], [4]], max_len=6)
    assert full.shape == (2,)
    with pytest.raises(ValueError, match="no room for context"):
        option_logprobs(model, [1, 2], [[1] * 6], max_len=6)


def test_choice_items_validate_their_fields():
    with pytest.raises(ValueError, match="answer"):
        ChoiceItem("q", (" a", " b"), answer=2)
    with pytest.raises(ValueError, match="repeated"):
        ChoiceItem("q", (" a", " a"), answer=0)


# ------------------------------------------------------------------------------ benchmarks from text
WORDS = [f"{a}{b}{c}{d}" for a in "bcdf" for b in "aeiou" for c in "lmnr" for d in "aeiou"][:300]


def _docs(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    docs = []
    for i in range(n):
        sentences = []
        for _ in range(6):
            idx = torch.randint(0, len(WORDS), (10,), generator=g).tolist()
            sentences.append("The " + " ".join(WORDS[j] for j in idx) + ".")
        docs.append({"id": i, "text": " ".join(sentences)})
    return docs


def test_held_out_split_is_disjoint_stable_and_of_the_asked_size():
    docs = [{"id": i, "text": ""} for i in range(2000)]
    train, held = split_documents(docs, 0.1, seed=3)
    assert {d["id"] for d in train}.isdisjoint(d["id"] for d in held) and len(train) + len(held) == 2000
    assert abs(len(held) - 200) < 45
    _, held_again = split_documents(list(reversed(docs)), 0.1, seed=3)     # order does not matter
    assert sorted(d["id"] for d in held_again) == sorted(d["id"] for d in held)
    assert is_held_out(held[0]["id"], 0.1, seed=3) and not is_held_out(held[0]["id"], 0.0, seed=3)


def test_cloze_questions_come_from_held_out_text_and_are_deterministic():
    train, held = split_documents(_docs(), 0.25)
    vocab = word_counts(d["text"] for d in train)
    items = cloze_benchmark(held, vocab, n_items=12, band=40)
    assert len(items) == 12 and items == cloze_benchmark(held, vocab, n_items=12, band=40)
    held_text = {d["id"]: d["text"] for d in held}
    for item in items:
        doc_id = int(item.id.split(":")[1])
        assert doc_id in held_text                                          # only held-out documents
        assert len(item.options) == 4
        assert item.prompt + item.options[item.answer] in held_text[doc_id]   # the true option restores the text
        assert all(item.prompt + o not in held_text[doc_id] for i, o in enumerate(item.options) if i != item.answer)
        words = [re.match(r" ([a-z]+)", o).group(1) for o in item.options]
        assert all(w in vocab for w in words)                               # distractors are corpus words
        assert len({o[len(w) + 1:] for o, w in zip(item.options, words)}) == 1   # the same rest of the sentence
    assert Counter(item.answer for item in items).most_common(1)[0][1] < 12  # the answer position varies
    assert cloze_benchmark(held, vocab, n_items=12, band=40, seed=1) != items


def test_math_benchmark_is_deterministic_and_skips_training_questions():
    first = math_benchmark(6, seed=5)
    assert [i.question for i in first] == [i.question for i in math_benchmark(6, seed=5)]
    corpus = [f"Question: {first[0].question}\nAnswer: {first[0].answer}",
              f"Question: {first[3].question}\nAnswer: {first[3].answer}"]
    seen = training_questions(corpus)
    assert seen == {first[0].question, first[3].question}
    again = math_benchmark(6, seed=5, exclude=seen)
    assert not seen & {i.question for i in again} and len(again) == 6
    assert len({i.question for i in again}) == 6


def test_math_benchmark_draws_past_its_first_dataset_when_exclusions_use_it_up(monkeypatch):
    import minillm.eval.math as math_mod

    base = math_benchmark(80, seed=5)                          # the first 80 distinct questions of seed 5
    excluded = {i.question for i in base[:70]}
    # 10 items start from a dataset of 2·10 + 20 = 40 problems, all of them excluded: it must grow, not give up
    items = math_benchmark(10, seed=5, exclude=excluded)
    assert len(items) == 10 and not excluded & {i.question for i in items}
    assert [i.question for i in items[:10]] == [i.question for i in base[70:80]]    # same problems, same order
    monkeypatch.setattr(math_mod, "MAX_DRAWS", 60)
    with pytest.raises(ValueError, match="basic_arithmetic.*ran out of unseen questions after 60 draws"):
        math_benchmark(10, seed=5, exclude=excluded)


def test_math_answers_are_checked_by_reasoning_gym():
    import reasoning_gym
    item = math_benchmark(1, seed=7)[0]
    score = reasoning_gym.get_score_answer_fn(item.task)
    assert score(extract_answer(f" {item.answer}\nQuestion: next"), item.entry) == 1.0
    assert score(extract_answer(f"Let me see.\n#### {item.answer}"), item.entry) == 1.0
    assert score(extract_answer(f" {int(item.answer) + 1}"), item.entry) == 0.0


def test_arithmetic_choices_hold_the_answer_once_among_distinct_options():
    items = math_benchmark(5, seed=3)
    choices = arithmetic_choice_benchmark(items)
    assert len(choices) == 5 and choices == arithmetic_choice_benchmark(items)
    for item, choice in zip(items, choices):
        assert choice.options[choice.answer] == f" {item.answer}" and len(set(choice.options)) == 4
        assert choice.prompt == f"Question: {item.question}\nAnswer:"
