"""Post-training data from verifiable tasks: instructions, dialogues and ranked preferences (report §4.1, §4.2).

Llama 3's post-training data is human: prompts written by annotators, responses from the latest models, preferences
ranked *edited > chosen > rejected* (annotators edit the chosen response to improve it, §4.2.1). None of that ships
offline, so we build its analogue from ``reasoning-gym`` problems, whose answers a checker verifies:

- an **instruction** is a problem phrased through one of several templates (``INSTRUCTIONS``), sometimes under a
  system prompt; its reference response is ``"The answer is N."`` (``canonical_response``);
- a **dialogue** strings 2-3 problems into one chat in the Llama 3 format (``Tokenizer.encode_chat``);
- a **preference triple** for a prompt: ``rejected`` gives a wrong number (a near miss), ``chosen`` the right number
  carelessly written (``"7 i think"``), ``edited`` the chosen answer corrected into the reference style. The ranking
  is verifiable: correctness first (``score_response``, reasoning-gym's own scorer), style second.

With ``DataConfig(instructions=True)`` each problem also carries a format instruction (``PostItem``, see
``minillm.post.instructions``): the reference answers in the asked-for form, the SFT data carries planted annotator
noise (``ignore_prob`` per kind, ``sloppy_prob``), and a preference triple ranks by flaws instead of numbers
(``edited``: none, ``chosen``: one, ``rejected``: both). That is the task chapter 5 runs, because a small model can
learn form where it cannot learn arithmetic.

``PostData`` holds disjoint splits: ``train`` (SFT and preference data), ``dev`` (held-out reward-model pairs and the
choice of each round's best model) and ``test`` (the accuracy we report), drawn from distant seeds with every
question of an earlier split excluded (``minillm.eval.math_benchmark``).
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Sequence

from minillm.eval.math import HELD_OUT_SEED, MathItem, math_benchmark
from minillm.post.instructions import KINDS, NUMBER, FormatInstruction, follows, ignoring, with_tic
from minillm.eval.math import EASY_ARITHMETIC

Chat = list[dict[str, str]]          # [{"role": "user", "content": "..."}, ...]
DEV_SEED = 500_009                   # between the train seeds (small) and HELD_OUT_SEED (1,000,003)

SYSTEM_PROMPT = "You are a careful maths assistant. Answer in the form the user asks for."
# {q}: the reasoning-gym question ("Calculate 5 - 3."); {e}: its bare expression ("5 - 3") when the task has one
INSTRUCTIONS = ("{q}", "{q} Answer with just the result.", "What is {e}?", "Please work out {e}.",
                "Compute {e} for me.", "Quick one: {e} = ?")
FOLLOW_UPS = ("Now this one: {q}", "Thanks! Next: {q}", "And {e}?", "One more. {q}")
SLOPPY = ("{a}", "{a} i think", "hmm, {a}?", "it is {a} obviously!!", "{a}. next question")
_ANSWER = re.compile(r"The answer is\s*(-?\d+(?:\.\d+)?(?:/\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class PostItem(MathItem):
    """A reasoning-gym problem with the format ``instruction`` its answer must follow (None: the plain sentence)."""

    instruction: FormatInstruction | None = None


def canonical_response(item: MathItem) -> str:
    """The reference (edited) response: ``"The answer is N."`` in the form the item's instruction asks for."""
    instruction = getattr(item, "instruction", None)
    return instruction.render(item.answer) if instruction else f"The answer is {item.answer}."


def follows_instruction(item: PostItem, text: str) -> bool:
    """The loop's verifiable target: ``text`` follows the item's format instruction and states a number."""
    if getattr(item, "instruction", None) is None:
        raise ValueError("follows_instruction needs an item with an instruction; build the data with "
                         "DataConfig(instructions=True)")
    return follows(item.instruction, text)


def extract_final_answer(text: str) -> str:
    """The answer in a response: the number after its *first* ``"The answer is"`` when there is one (a sample that
    states an answer and then rambles on is graded on what it stated, not on a later number), else its last number,
    else the text."""
    text = text.strip()
    found = _ANSWER.search(text)
    if found:
        return found.group(1)
    numbers = NUMBER.findall(text)
    return numbers[-1] if numbers else text


def score_response(item: MathItem, text: str) -> float:
    """reasoning-gym's score of the response's final answer (1.0 right; some tasks give partial credit)."""
    import reasoning_gym

    return float(reasoning_gym.get_score_answer_fn(item.task)(extract_final_answer(text), item.entry))


def is_correct(item: MathItem, text: str) -> bool:
    return score_response(item, text) == 1.0


# What a run optimises and reports (``PostTrainSpec.target``): the right number, or the asked-for format.
TARGETS = {"answer": is_correct, "instruction": follows_instruction}


def _expression(item: MathItem) -> str | None:
    return item.entry.get("metadata", {}).get("expression")


def instruction(item: MathItem, rng: random.Random, follow_up: bool = False) -> str:
    """The problem phrased through a random template (expression templates only where the task gives one)."""
    expr = _expression(item)
    templates = FOLLOW_UPS if follow_up else INSTRUCTIONS
    usable = [t for t in templates if "{e}" not in t or expr is not None]
    return _with_instruction(item, rng.choice(usable).format(q=item.question, e=expr))


def _with_instruction(item: MathItem, text: str) -> str:
    instruction = getattr(item, "instruction", None)
    return f"{text} {instruction.describe()}" if instruction else text


def eval_prompt(item: MathItem) -> Chat:
    """The fixed prompt held-out accuracy is measured with: system prompt + the question as reasoning-gym writes it
    (+ the item's format instruction)."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _with_instruction(item, item.question)}]


def instruction_chat(item: MathItem, rng: random.Random, system_prob: float = 0.5) -> Chat:
    """One templated instruction and its reference answer (with the system prompt with probability ``system_prob``)."""
    chat = [{"role": "system", "content": SYSTEM_PROMPT}] if rng.random() < system_prob else []
    return chat + [{"role": "user", "content": instruction(item, rng)},
                   {"role": "assistant", "content": canonical_response(item)}]


def dialogue(items: Sequence[MathItem], rng: random.Random) -> Chat:
    """A multi-turn chat: one user turn per problem (follow-up templates after the first), each answered."""
    chat = [{"role": "system", "content": SYSTEM_PROMPT}]
    for turn, item in enumerate(items):
        chat += [{"role": "user", "content": instruction(item, rng, follow_up=turn > 0)},
                 {"role": "assistant", "content": canonical_response(item)}]
    return chat


def wrong_answer(item: MathItem, rng: random.Random, others: Sequence[MathItem] = ()) -> str:
    """A near miss of an integer answer (± 1, 2, 10 or the sign flipped), else another problem's answer."""
    try:
        value = int(item.answer)
    except ValueError:
        pool = [o.answer for o in others if o.answer != item.answer]
        if not pool:
            raise ValueError(f"cannot make a wrong answer for the non-integer answer {item.answer!r} without "
                             f"other problems; pass others=")
        return rng.choice(pool)
    return str(rng.choice(sorted({value + d for d in (-10, -2, -1, 1, 2, 10)} | {-value} - {value})))


@dataclass(frozen=True)
class PreferenceTriple:
    """A prompt and responses ranked ``edited > chosen > rejected`` (``edited`` may be None: two responses)."""

    prompt: Chat
    chosen: str
    rejected: str
    edited: str | None = None
    item: MathItem | None = field(default=None, compare=False, repr=False)

    def ranked(self) -> list[str]:
        """Responses best first."""
        return [r for r in (self.edited, self.chosen, self.rejected) if r is not None]

    def pairs(self) -> list[tuple[str, str]]:
        """Every ``(better, worse)`` pair the ranking implies: 3 for a triple (report §4.1.2), 1 for a pair."""
        ranked = self.ranked()
        return [(ranked[i], ranked[j]) for i in range(len(ranked)) for j in range(i + 1, len(ranked))]


def synthetic_preference(item: MathItem, rng: random.Random, others: Sequence[MathItem] = (),
                         edited_prob: float = 1.0) -> PreferenceTriple:
    """A ranked triple for ``item`` (see the module docstring); ``edited`` kept with probability ``edited_prob``.
    For an item with a format instruction every response has the right number and the ranking is by flaws:
    ``edited`` has none, ``chosen`` one (ignores the instruction, or is sloppy), ``rejected`` both."""
    prompt = [{"role": "user", "content": instruction(item, rng)}]
    if getattr(item, "instruction", None) is not None:
        reference = canonical_response(item)
        ignored = ignoring(item.instruction, item.answer, rng)
        chosen = ignored if rng.random() < 0.5 else with_tic(reference, rng)
        edited = reference if rng.random() < edited_prob else None
        return PreferenceTriple(prompt, chosen, with_tic(ignored, rng), edited, item)
    chosen = rng.choice(SLOPPY).format(a=item.answer)
    wrong = wrong_answer(item, rng, others)
    rejected = rng.choice([f"The answer is {wrong}.", rng.choice(SLOPPY).format(a=wrong)])
    edited = canonical_response(item) if rng.random() < edited_prob else None
    return PreferenceTriple(prompt, chosen, rejected, edited, item)


@dataclass(frozen=True)
class DataConfig:
    """Sizes of the splits and of the data built from them; ``task_config`` as ``minillm.eval.math_benchmark``."""

    n_train: int = 256
    n_dev: int = 64
    n_test: int = 128
    tasks: tuple[str, ...] = ("basic_arithmetic",)
    task_config: dict = field(default_factory=lambda: dict(EASY_ARITHMETIC))
    dialogue_fraction: float = 0.25        # share of SFT chats that are multi-turn
    max_turns: int = 3
    edited_prob: float = 0.5               # share of preference samples with an edited response
    instructions: bool = False             # give each problem a format instruction (``instructions.KINDS``)
    # annotator noise in the SFT responses: per instruction kind, the share answered in the plain sentence
    # regardless (a habit, not random errors), and the share wrapped in a tic the cleaning rules remove
    ignore_prob: dict = field(default_factory=dict)
    sloppy_prob: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_dev", "n_test", "max_turns"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"DataConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("dialogue_fraction", "edited_prob", "sloppy_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DataConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        if not self.tasks:
            raise ValueError("DataConfig.tasks is empty; name at least one reasoning-gym task, e.g. 'basic_arithmetic'")
        for kind, p in self.ignore_prob.items():
            if kind not in KINDS or not 0.0 <= p <= 1.0:
                raise ValueError(f"DataConfig.ignore_prob maps an instruction kind in {KINDS} to a share in "
                                 f"[0, 1]; got {kind!r}: {p!r}")
            if p + self.sloppy_prob > 1.0:
                raise ValueError(f"DataConfig.ignore_prob[{kind!r}] + sloppy_prob must be <= 1, got "
                                 f"{p} + {self.sloppy_prob}")
        if (self.ignore_prob or self.sloppy_prob) and not self.instructions:
            raise ValueError("DataConfig.ignore_prob and sloppy_prob plant flaws in instruction responses; set "
                             "instructions=True or leave them at 0")
        if self.max_turns < 2 and self.dialogue_fraction > 0:
            raise ValueError("DataConfig.max_turns must be >= 2 for dialogues; or set dialogue_fraction=0")


@dataclass
class PostData:
    """The splits (``MathItem`` lists) and what is built from them: SFT chats, train / held-out preferences."""

    train: list[MathItem]
    dev: list[MathItem]
    test: list[MathItem]
    sft_chats: list[Chat]
    preferences: list[PreferenceTriple]
    heldout_preferences: list[PreferenceTriple]
    planted: list[str] = field(default_factory=list)     # per SFT chat: "", "ignores" or "sloppy" (its last turn)


def build_post_data(cfg: DataConfig = DataConfig(), exclude: set[str] = frozenset()) -> PostData:
    """Draw the three splits (seeds ``seed``, ``DEV_SEED + seed``, ``HELD_OUT_SEED + seed``; each excludes the
    questions of the splits before it and ``exclude``, e.g. the pre-training corpus's) and build the data from them.
    The seeds lie far apart because reasoning-gym draws problem ``i`` from ``seed + i``: seeds 0 and 1 give the same
    problems shifted by one."""
    kw = dict(tasks=cfg.tasks, task_config=cfg.task_config)
    train = math_benchmark(cfg.n_train, seed=cfg.seed, exclude=set(exclude), **kw)
    seen = set(exclude) | {i.question for i in train}
    dev = math_benchmark(cfg.n_dev, seed=DEV_SEED + cfg.seed, exclude=seen, **kw)
    seen |= {i.question for i in dev}
    test = math_benchmark(cfg.n_test, seed=HELD_OUT_SEED + cfg.seed, exclude=seen, **kw)
    if cfg.instructions:
        train, dev, test = (_instructed(split, f"{cfg.seed}:{name}") for split, name in
                            ((train, "train"), (dev, "dev"), (test, "test")))
    rng = random.Random(f"post-data:{cfg.seed}")
    chats, planted = [], []
    for i, item in enumerate(train):
        if rng.random() < cfg.dialogue_fraction:
            others = rng.sample(train, rng.randint(1, cfg.max_turns - 1))
            chats.append(dialogue([*others, item], rng))
        else:
            chats.append(instruction_chat(item, rng))
        flaw = ""
        if cfg.instructions:                      # the last answer of the chat is the noisy one
            ignore = cfg.ignore_prob.get(item.instruction.kind, 0.0)
            flaw = rng.choices(["ignores", "sloppy", ""], [ignore, cfg.sloppy_prob, 1 - ignore - cfg.sloppy_prob])[0]
        if flaw:
            bad = f"The answer is {item.answer}." if flaw == "ignores" else with_tic(canonical_response(item), rng)
            chats[-1][-1] = {"role": "assistant", "content": bad}
        planted.append(flaw)
    prefs = [synthetic_preference(item, rng, train, cfg.edited_prob) for item in train]
    held = [synthetic_preference(item, rng, dev, cfg.edited_prob) for item in dev]
    return PostData(train, dev, test, chats, prefs, held, planted)


def _instructed(items: list[MathItem], key: str) -> list[PostItem]:
    """Each problem with a format instruction, drawn in turn from a seeded shuffle of ``KINDS`` (balanced)."""
    rng = random.Random(f"instructions:{key}")
    kinds = []
    while len(kinds) < len(items):
        kinds += rng.sample(KINDS, len(KINDS))
    return [PostItem(**{f.name: getattr(item, f.name) for f in dataclasses.fields(MathItem)},
                     instruction=FormatInstruction(kind)) for item, kind in zip(items, kinds)]
