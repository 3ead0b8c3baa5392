"""A maths benchmark with a checker (report §5.1: GSM8K, MATH), built from ``reasoning-gym`` problems.

The corpus holds reasoning-gym problems written as ``"Question: …\\nAnswer: …"`` (``minillm.data.sources.math_problems``,
seed 0). The benchmark draws problems of the same tasks from another seed (``HELD_OUT_SEED``) and drops any whose
question text also occurs in the training data, so the model is never scored on a problem it has read.

- ``math_benchmark`` → ``MathItem``s; ``score_math`` prompts ``"Question: {q}\\nAnswer:"``, decodes greedily with
  ``minillm.generate``, cuts the answer at the first newline (a worked answer's ``#### N`` line is used when
  present) and asks the task's own ``score_answer`` (1.0 for a right answer; some tasks give partial credit).
  ``score`` is the mean; ``exact`` the share scored 1.0.
- ``arithmetic_choice_benchmark``: the same problems as 4-option multiple choice (the true number and three near
  misses), scored by log-likelihood like the cloze test — a maths signal a small model shows before it can
  write answers.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from minillm.eval.choice import ChoiceItem

MAX_DRAWS = 100_000                 # problems drawn per task at most before math_benchmark gives up
HELD_OUT_SEED = 1_000_003           # the corpus uses seed 0 (book) ... small seeds; this one is far from them
# the book's arithmetic: one-digit, two-term problems (benchmarks, annealing drills, post-training's tasks)
EASY_ARITHMETIC = {"basic_arithmetic": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
_QUESTION = re.compile(r"^Question: (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class MathItem:
    """A reasoning-gym problem: ``task`` name, ``index`` in its dataset, the ``question`` and the reference
    ``answer``; ``entry`` is the dataset's dict, which its ``score_answer`` needs."""

    task: str
    index: int
    question: str
    answer: str
    entry: dict

    @property
    def prompt(self) -> str:
        return f"Question: {self.question}\nAnswer:"


def training_questions(texts: Iterable[str]) -> set[str]:
    """The question lines (``"Question: …"``) of training texts, to keep them out of the benchmark."""
    return {m.group(1).strip() for text in texts for m in _QUESTION.finditer(text)}


def math_benchmark(n_items: int, tasks: Sequence[str] = ("basic_arithmetic",), seed: int = HELD_OUT_SEED,
                   exclude: set[str] = frozenset(), task_config: dict[str, dict] | None = None) -> list[MathItem]:
    """``n_items`` problems, alternating over ``tasks``, from ``reasoning_gym.create_dataset(task, size, seed,
    **task_config[task])`` (e.g. ``{"basic_arithmetic": {"max_terms": 2, "max_digits": 1}}`` for an easy set),
    skipping questions in ``exclude`` (see ``training_questions``) and duplicates.

    A dataset starts at ``2·n_items + 20`` problems and doubles (its first problems stay the same: reasoning-gym
    seeds each index) while exclusions and repeats use them up, up to ``MAX_DRAWS`` problems per task; a small
    question space (one-digit sums have a few thousand) then raises an error naming the task."""
    import reasoning_gym  # slow to import (~2.5 s): only when a benchmark is built

    if n_items < 1 or not tasks:
        raise ValueError(f"math_benchmark needs n_items >= 1 and at least one task, got {n_items}, {tasks}")
    config = task_config or {}

    def dataset(task: str, size: int):
        return reasoning_gym.create_dataset(task, size=size, seed=seed, **config.get(task, {}))

    datasets = {task: dataset(task, 2 * n_items + 20) for task in tasks}    # room for the excluded ones
    items, seen = [], set(exclude)
    cursor = {task: 0 for task in tasks}
    while len(items) < n_items:
        task = tasks[len(items) % len(tasks)]
        index = cursor[task]
        if index >= len(datasets[task]):
            if index >= MAX_DRAWS:
                raise ValueError(f"reasoning-gym task {task!r} ran out of unseen questions after {index} draws "
                                 f"({len(items)} of {n_items} found); exclude fewer, ask for fewer items or widen "
                                 f"task_config")
            datasets[task] = dataset(task, min(2 * index, MAX_DRAWS))
        cursor[task] += 1
        entry = datasets[task][index]
        question = entry["question"].strip()
        if question in seen:
            continue
        seen.add(question)
        items.append(MathItem(task, index, question, str(entry["answer"]), entry))
    return items


def extract_answer(completion: str) -> str:
    """The answer in a completion: the number after ``####`` if a worked answer gives one, else the first line."""
    final = re.search(r"####\s*(\S+)", completion)
    if final:
        return final.group(1)
    return completion.strip().split("\n")[0].strip()


def score_math(model, tokenizer, items: Sequence[MathItem], max_new_tokens: int = 12, batch_size: int = 32,
               keep_completions: int = 5) -> dict:
    """Greedy answers to ``items`` checked by reasoning-gym: ``{"score", "exact", "n", "examples"}`` (the first
    ``keep_completions`` prompts with what the model wrote)."""
    import reasoning_gym
    from minillm.generate import generate

    if not items:
        raise ValueError("score_math got no items; build them with math_benchmark")
    was_training = model.training
    model.eval()
    scores, examples = [], []
    stop = list(tokenizer.stop_ids)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        prompts = [[tokenizer.bos_id, *tokenizer.encode(item.prompt)] for item in chunk]
        outputs = generate(model, prompts, max_new_tokens, stop_tokens=stop)
        for item, out in zip(chunk, outputs):
            completion = tokenizer.decode(out)
            answer = extract_answer(completion)
            scorer = reasoning_gym.get_score_answer_fn(item.task)
            score = float(scorer(answer, item.entry))
            scores.append(score)
            if len(examples) < keep_completions:
                examples.append({"question": item.question, "reference": item.answer, "completion": completion,
                                 "answer": answer, "score": score})
    model.train(was_training)
    return {"score": sum(scores) / len(scores), "exact": sum(s == 1.0 for s in scores) / len(scores),
            "n": len(scores), "examples": examples}


def arithmetic_choice_benchmark(items: Sequence[MathItem], seed: int = 0, n_options: int = 4) -> list[ChoiceItem]:
    """Multiple-choice versions of integer-answer problems: the answer and ``n_options - 1`` distinct near misses
    (± 1, 2 or 10, or the sign flipped), in a seeded order. Items without an integer answer are skipped."""
    out = []
    for item in items:
        try:
            value = int(item.answer)
        except ValueError:
            continue
        rng = random.Random(f"arith:{seed}:{item.task}:{item.index}")
        candidates = {value + d for d in (-10, -2, -1, 1, 2, 10)} | {-value}
        candidates.discard(value)
        wrong = rng.sample(sorted(candidates), min(n_options - 1, len(candidates)))
        options = [f" {v}" for v in [value, *wrong]]
        rng.shuffle(options)
        out.append(ChoiceItem(item.prompt, tuple(options), options.index(f" {value}"),
                              id=f"arith:{item.task}:{item.index}"))
    return out
