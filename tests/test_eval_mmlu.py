"""The MMLU format scored by log-likelihood: an oracle scores 100%, a random guesser scores chance, the prompt has
the report's layout, and the correct answer's normalized NLL is the sum of its token log-probabilities per byte."""

import random

import pytest
import torch
from torch import nn

from minillm.eval import ChoiceItem, score_choices
from minillm.eval.mmlu import LETTERS, as_mmlu, cloze_question, mmlu_block


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
