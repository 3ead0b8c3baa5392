"""The MMLU question format: lettered choices, the model scored on the letter (report §5.1.1).

MMLU shows the options in the prompt and asks for a letter:

    Question: Glucose is transported into the muscle cell:

    Choices:
    A. via protein transporters called GLUT4.
    B. only in the presence of insulin.
    C. via hexokinase.
    D. via monocarbylic acid transporters.

    Correct answer: A

Scored by log-likelihood, the options are the four letters ``" A" … " D"`` after ``"Correct answer:"``, so every
option is one token and length normalisation does not matter. Unlike the *cloze* form (``cloze.py``: each option
text scored as a continuation), this form tests whether the model can *use* a list of choices: the question, the
choices and the letter must be linked. Small base models cannot, and sit at chance on it while they already beat
chance on the cloze form of the same questions (the chapter measures both). Few-shot prompts (MMLU is usually run
5-shot, as in the report's Table 9) prepend solved examples in the same format.

``as_mmlu`` turns any ``ChoiceItem`` (a cloze or arithmetic question) into this format; ``score_choices`` scores it.

**MMLU-Pro** (Wang et al., 2024) keeps MMLU's layout with ten options, ``A`` to ``J``: its authors added six
distractors to each question (and replaced trivial and noisy ones with harder, more reasoning-heavy questions).
Chance falls from 25% to 10%, and the spread of scores under 24 prompt styles shrank from 4-5 points to about 2. ``add_options`` is the construction: keep an item's options, add distractors, shuffle.
"""

from __future__ import annotations

import random
from typing import Sequence

from minillm.eval.choice import ChoiceItem

LETTERS = "ABCDEFGHIJ"


def mmlu_block(question: str, options: Sequence[str], answer: int | None = None) -> str:
    """One question in MMLU format; with ``answer`` the letter is filled in (a solved few-shot example)."""
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options can be lettered, got {len(options)}")
    lines = [f"Question: {question.strip()}", "", "Choices:"]
    lines += [f"{LETTERS[i]}. {opt.strip()}" for i, opt in enumerate(options)]
    lines += ["", "Correct answer:" + (f" {LETTERS[answer]}" if answer is not None else "")]
    return "\n".join(lines)


def as_mmlu(item: ChoiceItem, question: str | None = None, shots: Sequence[ChoiceItem] = ()) -> ChoiceItem:
    """``item`` as an MMLU question: the prompt lists the options, the options become ``" A"``, ``" B"``, ….
    ``question``: the question text (default: the item's prompt); ``shots``: solved examples put first."""
    text = item.prompt if question is None else question
    solved = [mmlu_block(s.prompt, s.options, s.answer) for s in shots]
    prompt = "\n\n".join([*solved, mmlu_block(text, item.options)])
    return ChoiceItem(prompt, tuple(f" {LETTERS[i]}" for i in range(len(item.options))), item.answer,
                      id=f"mmlu:{item.id}")


def cloze_question(item: ChoiceItem, context_words: int = 40) -> str:
    """A cloze item as a question: the last ``context_words`` words of its text and "Which continuation follows?"."""
    words = item.prompt.split()
    return f"Which continuation follows the text \"... {' '.join(words[-context_words:])}\"?"


def add_options(item: ChoiceItem, distractors: Sequence[str], n_options: int = 10) -> ChoiceItem:
    """``item`` with ``n_options`` options: its own, plus the first new ones of ``distractors`` (options it already
    has are skipped), in a seeded order (the item's id) with the answer tracked: MMLU-Pro's 4 → 10 construction."""
    if n_options > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options can be lettered, got n_options={n_options}")
    extra = [d for d in dict.fromkeys(distractors) if d not in item.options][:n_options - len(item.options)]
    if len(item.options) + len(extra) < n_options:
        raise ValueError(f"item {item.id!r} has {len(item.options)} options and {len(extra)} new distractors: "
                         f"fewer than n_options={n_options}; pass more distractors")
    options = [*item.options, *extra]
    order = list(range(n_options))
    random.Random(f"add_options:{item.id}:{n_options}").shuffle(order)
    return ChoiceItem(item.prompt, tuple(options[i] for i in order), order.index(item.answer),
                      id=f"{item.id}:{n_options}opt")
