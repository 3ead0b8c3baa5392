"""The MMLU format scored by log-likelihood: an oracle scores 100%, a random guesser scores chance, the prompt has
the report's layout, and the correct answer's normalized NLL is the sum of its token log-probabilities per byte.
MMLU-Pro's ten options: the item's own options kept, new distractors added, the answer tracked, chance at 10%."""

import random

import pytest
import torch
from torch import nn

from minillm.eval import ChoiceItem, score_choices
from minillm.eval.cloze import cloze_benchmark, cloze_distractors, word_counts
from minillm.eval.mmlu import LETTERS, add_options, as_mmlu, cloze_question, mmlu_block


class Chars:
    """Token id = code point (ASCII), BOS = 0."""

    bos_id = 0

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids if i)


class Oracle(nn.Module):
    """Reads the prompt back from the tokens and puts all its mass on the right letter after "Correct answer:"."""

    def __init__(self, answers: dict[str, int]):
        super().__init__()
        self.answers, self.w = answers, nn.Parameter(torch.zeros(1))

    def forward(self, tokens, doc_ids=None):
        logits = torch.full((*tokens.shape, 128), -20.0)
        for b, row in enumerate(tokens.tolist()):
            text = Chars().decode(row)
            cut = text.rfind("Correct answer:") + len("Correct answer:")
            answer = self.answers[text[:cut]]
            logits[b, cut, ord(" ")] = 20.0                                 # position cut reads BOS + text[:cut]
            logits[b, cut + 1, ord(LETTERS[answer])] = 20.0
        return logits


class Guesser(nn.Module):
    """Random logits at every position: no knowledge at all."""

    def __init__(self, seed=0):
        super().__init__()
        self.g, self.w = torch.Generator().manual_seed(seed), nn.Parameter(torch.zeros(1))

    def forward(self, tokens, doc_ids=None):
        return torch.randn(*tokens.shape, 128, generator=self.g)


def _items(n, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        opts = [str(a + b), str(a + b + 1), str(a + b - 2), str(a * b + 100)]
        rng.shuffle(opts)
        out.append(ChoiceItem(f"What is {a} + {b}?", tuple(opts), opts.index(str(a + b)), id=f"add{i}"))
    return out


def test_mmlu_block_has_the_layout_of_the_report_example():
    text = mmlu_block("Glucose is transported into the muscle cell:", ["via protein transporters called GLUT4.",
                      "only in the presence of insulin.", "via hexokinase.", "via monocarbylic acid transporters."], 0)
    assert text == ("Question: Glucose is transported into the muscle cell:\n\nChoices:\n"
                    "A. via protein transporters called GLUT4.\nB. only in the presence of insulin.\n"
                    "C. via hexokinase.\nD. via monocarbylic acid transporters.\n\nCorrect answer: A")


def test_as_mmlu_letters_the_options_keeps_the_answer_and_prepends_solved_shots():
    items = _items(3)
    q = as_mmlu(items[2], shots=items[:2])
    assert q.options == (" A", " B", " C", " D") and q.answer == items[2].answer
    assert q.prompt.count("Question:") == 3 and q.prompt.endswith("Correct answer:")
    assert f"Correct answer: {LETTERS[items[0].answer]}" in q.prompt
    assert "Which continuation follows" in cloze_question(ChoiceItem("a b c", (" d", " e"), 0))


def test_an_oracle_scores_every_mmlu_question_and_a_guesser_scores_near_chance():
    items = [as_mmlu(it) for it in _items(200)]
    oracle = Oracle({it.prompt: it.answer for it in items})
    assert score_choices(oracle, Chars(), items)["acc"] == 1.0
    result = score_choices(Guesser(), Chars(), items)
    assert result["chance"] == 0.25
    assert abs(result["acc"] - 0.25) < 0.1                                  # 3.3 binomial standard errors


def test_nll_per_byte_is_the_correct_options_log_likelihood_over_its_bytes():
    bias = torch.randn(128, generator=torch.Generator().manual_seed(1))

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, tokens, doc_ids=None):
            return bias.expand(*tokens.shape, -1)

    logp = torch.log_softmax(bias.double(), -1)
    items = [ChoiceItem("Q", (" ab", " c"), 0), ChoiceItem("Q", (" ab", " c"), 1)]
    result = score_choices(Fixed(), Chars(), items)
    want = [-float(logp[ord(" ")] + logp[ord("a")] + logp[ord("b")]) / 3, -float(logp[ord(" ")] + logp[ord("c")]) / 2]
    assert result["item_nll_per_byte"] == pytest.approx(want)
    assert result["nll_per_byte"] == pytest.approx(sum(want) / 2)


# ------------------------------------------------------------------------------------------------ MMLU-Pro
def _distractors(item, k=6):
    return [f"none of {i}" for i in range(k)]                               # never one of _items' numbers


def test_add_options_keeps_every_option_and_the_answer_and_adds_new_ones():
    for item in _items(50):
        pro = add_options(item, [item.options[0], *_distractors(item)])     # an existing option is skipped
        assert len(pro.options) == 10 and set(item.options) < set(pro.options)
        assert pro.options[pro.answer] == item.options[item.answer]
        assert pro.prompt == item.prompt
        assert add_options(item, [item.options[0], *_distractors(item)]) == pro     # seeded: the same every time
    # the answer lands on every letter, not always where it was
    positions = {add_options(it, _distractors(it)).answer for it in _items(200)}
    assert positions == set(range(10))


def test_add_options_says_what_to_fix():
    item = _items(1)[0]
    with pytest.raises(ValueError, match="pass more distractors"):
        add_options(item, ["x", "y"])
    with pytest.raises(ValueError, match="at most 10"):
        add_options(item, _distractors(item, 8), n_options=11)


def test_an_oracle_scores_every_ten_option_question_and_a_guesser_scores_near_ten_percent():
    items = [as_mmlu(add_options(it, _distractors(it))) for it in _items(400)]
    assert items[0].options == tuple(f" {c}" for c in "ABCDEFGHIJ") and "J. " in items[0].prompt
    oracle = Oracle({it.prompt: it.answer for it in items})
    assert score_choices(oracle, Chars(), items)["acc"] == 1.0
    result = score_choices(Guesser(), Chars(), items)
    assert result["chance"] == pytest.approx(0.1)
    assert abs(result["acc"] - 0.1) < 0.05                                  # 3.3 binomial standard errors


def test_cloze_distractors_are_new_words_of_similar_frequency_before_the_same_rest():
    rng = __import__("random").Random(0)
    words = [f"word{chr(97 + i)}{chr(97 + j)}" for i in range(10) for j in range(10)]      # 100 distinct words
    docs = [{"id": d, "text": " ".join(f"The {rng.choice(words)} and the {rng.choice(words)} sat on "
                                      f"{rng.choice(words)} here." for _ in range(30))} for d in range(40)]
    vocab = word_counts(d["text"] for d in docs)
    items = cloze_benchmark(docs, vocab, 30, band=40)
    ranked = [w for w, c in sorted(vocab.items(), key=lambda wc: (-wc[1], wc[0])) if c >= 3]
    for item in items:
        answer = item.options[item.answer]
        word = answer[1:].rstrip(".").split()[0]
        rest = answer[len(word) + 1:]
        extra = cloze_distractors(item, vocab, 6, band=40)
        assert len(set(extra)) == 6 and not set(extra) & set(item.options)
        for option in extra:
            assert option.startswith(" ") and option.endswith(rest)
            assert abs(ranked.index(option[1:len(option) - len(rest)]) - ranked.index(word)) <= 40
        pro = add_options(item, extra)
        assert pro.options[pro.answer] == answer and len(pro.options) == 10
