"""Format instructions a small model can learn, and the flaws that post-training has to remove (report §4.2-§4.3).

Arithmetic correctness is the one thing a model of a few million weights cannot learn in minutes, so a loop that
scores only correctness shows nothing (chapter 5 shows that too). What such a model *can* represent is form: whether
the answer is in capitals, in JSON, a bullet point, or ends with a set phrase, and whether it opens with an apology.
So each problem carries one **format instruction** (the IFEval idea, Zhou et al. 2023, report §5.2.1: an instruction a
program can check), and the "human" data carries the two kinds of noise the report's loop exists to fix:

- responses that **ignore the instruction** (annotators are inconsistent; the report's answer is rejection sampling
  with a reward model, §4.2.2, and preference training, §4.1.4). Rules cannot see this: only a checker or a reward
  model that reads the prompt can;
- **sloppy responses** that open with an apology, "As an AI ...", or pile on emojis and exclamation marks. The report
  removes these with rules (§4.2.3, "Data cleaning": "overuse of emojis or exclamation points", an "overly-apologetic
  tonal issue"); ``cleaning_rules`` are ours.

``follows(item, text)`` is the verifiable target: the instruction's check passes and the response states a number.
Correctness is scored separately (``minillm.post.data.score_response``).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

KINDS = ("uppercase", "lowercase", "json", "bullet", "ends_with")
ENDING = "That is all."
_DESCRIBE = {"uppercase": "Answer in capital letters.",
             "lowercase": "Answer in lowercase letters only.",
             "json": 'Answer in JSON with the key "answer".',
             "bullet": "Answer as one bullet point.",
             "ends_with": f"End your answer with '{ENDING}'"}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")         # an integer, decimal or fraction


@dataclass(frozen=True)
class FormatInstruction:
    """One checkable instruction on the form of an answer: ``kind`` in ``KINDS``."""

    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"FormatInstruction.kind must be one of {KINDS}, got {self.kind!r}")

    def describe(self) -> str:
        """The sentence appended to the user's question."""
        return _DESCRIBE[self.kind]

    def render(self, answer: str) -> str:
        """The reference response that follows the instruction: ``"THE ANSWER IS 7."``, ``'{"answer": 7}'``, ..."""
        plain = f"The answer is {answer}."
        return {"uppercase": plain.upper(), "lowercase": plain.lower(), "json": f'{{"answer": {answer}}}',
                "bullet": f"* {plain}", "ends_with": f"{plain} {ENDING}"}[self.kind]

    def check(self, response: str) -> bool:
        """Whether ``response`` follows the instruction (its form only; the number may be wrong)."""
        text = response.strip()
        letters = [c for c in text if c.isalpha()]
        if self.kind == "uppercase":
            return bool(letters) and all(c.isupper() for c in letters)
        if self.kind == "lowercase":
            return bool(letters) and all(c.islower() for c in letters)
        if self.kind == "json":
            try:
                value = json.loads(text)
            except ValueError:
                return False
            return isinstance(value, dict) and set(value) == {"answer"}
        if self.kind == "bullet":
            return text.startswith("* ") and "\n" not in text
        return text.endswith(ENDING) and len(text) > len(ENDING)


def follows(instruction: FormatInstruction, text: str) -> bool:
    """The target of the chapter's loop: the response follows ``instruction`` *and* states a number."""
    return instruction.check(text) and bool(NUMBER.search(text))


def ignoring(instruction: FormatInstruction, answer: str, rng: random.Random) -> str:
    """A response that ignores ``instruction``: the plain sentence, or the form another instruction asks for."""
    other = rng.choice([k for k in KINDS if k != instruction.kind])
    options = [f"The answer is {answer}.", FormatInstruction(other).render(answer)]
    return rng.choice([o for o in options if not instruction.check(o)])   # JSON is all lowercase letters


# short tics, so that a small model picks them up from its SFT data as readily as real models did from theirs
TICS = ("Sorry! {r}", "I apologize. {r}", "As an AI, {r}", "{r} 😊", "{r}!!")
_RULES = {"apology": re.compile(r"\b(sorry|apologi[sz]e|apologies)\b", re.IGNORECASE),
          "as an AI": re.compile(r"\bas an AI\b", re.IGNORECASE),
          "emoji": re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]"),
          "exclamation marks": re.compile(r"!{2,}")}


def with_tic(response: str, rng: random.Random) -> str:
    """``response`` wrapped in one of the tics the report's rules remove (``TICS``)."""
    return rng.choice(TICS).format(r=response)


def cleaning_rules(text: str) -> list[str]:
    """The names of the rules ``text`` breaks (empty: clean). Rules, not a model: an apology, "as an AI", any emoji,
    or two exclamation marks in a row (report §4.2.3)."""
    return [name for name, pattern in _RULES.items() if pattern.search(text)]


def is_clean(text: str) -> bool:
    return not cleaning_rules(text)


def rule_based_clean(chats: list) -> tuple[list, list[list[str]]]:
    """Drop every chat with an assistant turn that breaks a rule. Returns the kept chats and, per input chat, the
    rules it broke (empty for kept chats), so what the filter removed can be counted against what was planted."""
    broken = [sorted({r for m in chat if m["role"] == "assistant" for r in cleaning_rules(m["content"])})
              for chat in chats]
    return [c for c, b in zip(chats, broken) if not b], broken


def tail_repetition(text: str, n: int = 3) -> bool:
    """A degenerate ending: the response's last ``n`` words occur earlier in it too (the report's DPO changes
    target this failure and early end-of-turn, §4.1.4)."""
    words = text.split()
    if len(words) < 2 * n:
        return False
    tail = words[-n:]
    return any(words[i:i + n] == tail for i in range(len(words) - n))
