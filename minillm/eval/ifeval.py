"""Verifiable instruction following in the spirit of IFEval (Zhou et al., 2023; report §5.2.1, Table 2).

IFEval asks for things a program can check: "answer in fewer than 40 words", "wrap the whole answer in JSON",
"include the keywords X and Y", "write in all lowercase". Nobody has to judge quality, so the score is exact and
cheap. The report quotes IFEval for the post-trained models (80.4 / 87.5 / 88.6 for 8B / 70B / 405B, Table 2).

Here every instruction is a small frozen dataclass with ``describe()`` (the sentence added to the prompt) and
``check(response) -> bool``. ``ifeval_prompts(n, seed)`` draws tasks (a topic) and one to three compatible
instructions each, deterministically: the same ``(n, seed, VERSION)`` gives the same prompts on every machine.
``score_ifeval`` computes IFEval's four numbers:

- prompt-level *strict*: share of prompts whose instructions all pass;
- instruction-level *strict*: share of single instructions that pass;
- the *loose* versions: an instruction passes if it passes on any of a few cleaned variants of the response
  (without the first line, without the last line, without markdown ``*``), as IFEval does.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Sequence

VERSION = 1
_WORD = re.compile(r"\b\w+(?:['’]\w+)?\b")
TOPICS = ("the history of the printing press", "why rivers flood in spring", "how to brew a cup of tea",
          "the rules of chess", "what a compiler does", "the life of honey bees", "how tides work",
          "a famous play by Shakespeare", "why the sky is blue", "how to plant a tree", "the water cycle",
          "what makes a good password", "how bread rises", "the planets of the solar system",
          "how a bicycle stays upright", "the causes of inflation", "how vaccines work", "the invention of paper")
KEYWORDS = ("river", "history", "simple", "light", "energy", "careful", "ancient", "balance", "system", "water")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class WordCount:
    """"Answer in at most / at least N words"."""

    n: int
    relation: str = "at most"

    def __post_init__(self) -> None:
        if self.relation not in ("at most", "at least"):
            raise ValueError(f"WordCount.relation must be 'at most' or 'at least', got {self.relation!r}")

    def describe(self) -> str:
        return f"Answer in {self.relation} {self.n} words."

    def check(self, response: str) -> bool:
        words = count_words(response)
        return words <= self.n if self.relation == "at most" else words >= self.n


@dataclass(frozen=True)
class JsonFormat:
    """"The whole output is valid JSON" (a markdown ```json fence around it is tolerated, as in IFEval)."""

    def describe(self) -> str:
        return "Wrap your entire answer in JSON format."

    def check(self, response: str) -> bool:
        text = response.strip()
        text = re.sub(r"^```(?:json|JSON|Json)?\s*|\s*```$", "", text)
        try:
            json.loads(text)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class IncludeKeywords:
    """"Include the keywords ..." (whole words, any case)."""

    keywords: tuple[str, ...]

    def describe(self) -> str:
        return "Include the keywords " + ", ".join(repr(k) for k in self.keywords) + " in your answer."

    def check(self, response: str) -> bool:
        return all(re.search(rf"\b{re.escape(k)}\b", response, re.IGNORECASE) for k in self.keywords)


@dataclass(frozen=True)
class ForbiddenWords:
    """"Do not use the words ..."."""

    words: tuple[str, ...]

    def describe(self) -> str:
        return "Do not use the words " + ", ".join(repr(w) for w in self.words) + " anywhere in your answer."

    def check(self, response: str) -> bool:
        return not any(re.search(rf"\b{re.escape(w)}\b", response, re.IGNORECASE) for w in self.words)


@dataclass(frozen=True)
class Lowercase:
    """"Your entire response should be in lowercase letters" (and must contain some letter)."""

    def describe(self) -> str:
        return "Your entire answer must be in lowercase letters; no capital letters are allowed."

    def check(self, response: str) -> bool:
        return response == response.lower() and any(c.isalpha() for c in response)


@dataclass(frozen=True)
class NoCommas:
    """"Do not use any commas"."""

    def describe(self) -> str:
        return "Do not use any commas in your answer."

    def check(self, response: str) -> bool:
        return "," not in response


@dataclass(frozen=True)
class BulletList:
    """"Answer with exactly N markdown bullet points" (lines starting with ``* `` or ``- ``)."""

    n: int

    def describe(self) -> str:
        return f"Your answer must contain exactly {self.n} bullet points, each on its own line starting with '* '."

    def check(self, response: str) -> bool:
        return len(re.findall(r"^\s*[*-] ", response, re.MULTILINE)) == self.n


@dataclass(frozen=True)
class EndsWith:
    """"Finish your response with this exact phrase ..." (nothing may follow it but whitespace)."""

    phrase: str

    def describe(self) -> str:
        return f"Finish your answer with the exact phrase {self.phrase!r}. No other words should follow it."

    def check(self, response: str) -> bool:
        return response.strip().endswith(self.phrase)


Instruction = WordCount | JsonFormat | IncludeKeywords | ForbiddenWords | Lowercase | NoCommas | BulletList | EndsWith
# Pairs that cannot both hold (JSON needs commas between fields; bullets are not JSON; ...).
_CONFLICTS = {frozenset({"JsonFormat", "NoCommas"}), frozenset({"JsonFormat", "BulletList"}),
              frozenset({"JsonFormat", "EndsWith"}), frozenset({"Lowercase", "EndsWith"})}


@dataclass(frozen=True)
class IFItem:
    """A prompt and the instructions its response must follow."""

    task: str
    instructions: tuple[Instruction, ...]
    id: str = ""

    @property
    def prompt(self) -> str:
        return f"Write a short answer about {self.task}. " + " ".join(i.describe() for i in self.instructions)


def _draw(kind: str, rng: random.Random) -> Instruction:
    if kind == "WordCount":
        return WordCount(rng.choice((20, 30, 50, 80)), rng.choice(("at most", "at least")))
    if kind == "IncludeKeywords":
        return IncludeKeywords(tuple(rng.sample(KEYWORDS, rng.choice((1, 2)))))
    if kind == "ForbiddenWords":
        return ForbiddenWords(tuple(rng.sample(("very", "really", "thing", "good", "also"), 2)))
    if kind == "BulletList":
        return BulletList(rng.choice((2, 3, 4)))
    if kind == "EndsWith":
        return EndsWith(rng.choice(("Is there anything else I can help with?", "That is all.", "Any questions?")))
    return {"JsonFormat": JsonFormat, "Lowercase": Lowercase, "NoCommas": NoCommas}[kind]()


def ifeval_prompts(n: int, seed: int = 0, max_instructions: int = 3) -> list[IFItem]:
    """``n`` prompts, each a topic with 1 to ``max_instructions`` mutually compatible instructions of distinct kinds."""
    if n < 1 or max_instructions < 1:
        raise ValueError(f"ifeval_prompts needs n >= 1 and max_instructions >= 1, got {n}, {max_instructions}")
    kinds = ["WordCount", "JsonFormat", "IncludeKeywords", "ForbiddenWords", "Lowercase", "NoCommas", "BulletList",
             "EndsWith"]
    items = []
    for i in range(n):
        rng = random.Random(f"ifeval:v{VERSION}:{seed}:{i}")
        chosen: list[str] = []
        k = rng.randint(1, max_instructions)
        for kind in rng.sample(kinds, len(kinds)):
            if len(chosen) == k:
                break
            if all(frozenset({kind, c}) not in _CONFLICTS for c in chosen):
                chosen.append(kind)
        items.append(IFItem(rng.choice(TOPICS), tuple(_draw(k, rng) for k in chosen), id=f"ifeval:v{VERSION}:{seed}:{i}"))
    return items


def _loose_variants(response: str) -> list[str]:
    """IFEval's loose check: the response, without its first line, without its last line, without both; each also
    with markdown ``*`` removed."""
    lines = response.split("\n")
    base = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return base + [v.replace("*", "") for v in base]


def score_ifeval(items: Sequence[IFItem], responses: Sequence[str]) -> dict:
    """IFEval's accuracies of ``responses`` (one per item): ``prompt_strict``, ``instruction_strict``,
    ``prompt_loose``, ``instruction_loose``, ``n``, and ``per_kind`` (strict pass rate of each instruction kind)."""
    if len(items) != len(responses) or not items:
        raise ValueError(f"score_ifeval needs one response per item, got {len(items)} items, {len(responses)} responses")
    strict, loose, prompt_strict, prompt_loose = [], [], [], []
    per_kind: dict[str, list[bool]] = {}
    for item, response in zip(items, responses):
        variants = [v for v in _loose_variants(response) if v]
        s = [ins.check(response) for ins in item.instructions]
        lo = [any(ins.check(v) for v in variants) for ins in item.instructions]
        strict += s
        loose += lo
        prompt_strict.append(all(s))
        prompt_loose.append(all(lo))
        for ins, ok in zip(item.instructions, s):
            per_kind.setdefault(type(ins).__name__, []).append(ok)
    mean = lambda xs: sum(xs) / len(xs)   # noqa: E731
    return {"prompt_strict": mean(prompt_strict), "instruction_strict": mean(strict),
            "prompt_loose": mean(prompt_loose), "instruction_loose": mean(loose), "n": len(items),
            "per_kind": {k: mean(v) for k, v in sorted(per_kind.items())}}


def ifeval_responses(model, tokenizer, items: Sequence[IFItem], max_new_tokens: int = 64,
                     batch_size: int = 16) -> list[str]:
    """Greedy chat responses of ``model`` to ``items`` (the tokenizer's chat format, one user turn)."""
    from minillm.generate import generate

    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        prompts = [tokenizer.encode_chat([{"role": "user", "content": item.prompt}]) for item in chunk]
        for ids in generate(model, prompts, max_new_tokens, stop_tokens=list(tokenizer.stop_ids)):
            out.append(tokenizer.decode(ids))
    return out
