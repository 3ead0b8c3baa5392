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
"""

from __future__ import annotations

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
