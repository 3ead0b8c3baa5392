"""Long-context pre-training: raise the sequence length in steps, with a larger RoPE base θ (report §3.4.2).

The report: "we increase the supported context length in increments, pre-training until the model has successfully
adapted to the increased context length. We assess successful adaptation by measuring whether (1) model performance
on short-context evaluations has recovered completely and (2) the model perfectly solves 'needle in a haystack'
tasks up to that length." Llama 3 went from 8K to 128K in six stages over ~800B tokens.

- ``extend_context(model, seq_len, rope_theta)``: the same weights in a model whose ``max_seq_len`` (and optionally
  RoPE θ or Llama 3.1 ``RopeScaling``) changed; RoPE frequencies are a buffer computed from the config, so only the
  positions' rotation changes, no weight.
- ``needle_items``: the haystack probe as multiple choice: held-out text of about ``seq_len`` tokens with
  ``"The secret number is 4821."`` planted at a depth, ending with ``"The secret number is"``; the options are the
  true number and three others, scored by log-likelihood (``minillm.eval.score_choices``). 100% = "solved".
- ``long_context_stage``: for each ``ContextStage``, extend, train ``steps`` steps of sequences of the new length
  (same tokens per batch: fewer, longer rows) on text the model has not seen, then measure the short-context
  validation loss (per window, so a paired test can say whether it recovered), the needle accuracy and the
  repeated-tokens induction test (``minillm.eval.induction``): a needle can only be found by a model with induction
  heads, so the test says whether a needle at chance is a question of length or of a skill the model lacks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from minillm.config import RopeScaling
from minillm.eval.choice import ChoiceItem, score_choices
from minillm.eval.induction import induction_score
from minillm.model import Llama
from minillm.train.evaluate import window_losses
from minillm.train.packing import PackedData
from minillm.train.schedules import BatchRamp, LRSchedule
from minillm.train.trainer import TrainConfig, Trainer


@dataclass(frozen=True)
class ContextStage:
    """Train ``steps`` steps of ``batch_tokens`` tokens in sequences of ``seq_len`` with RoPE base ``rope_theta``."""

    seq_len: int
    steps: int
    rope_theta: float | None = None        # None: keep the model's θ
    rope_scaling: RopeScaling | None = None

    def __post_init__(self) -> None:
        if self.seq_len < 2 or self.steps < 0:
            raise ValueError(f"ContextStage needs seq_len >= 2 and steps >= 0, got {self.seq_len}, {self.steps}")


def extend_context(model: Llama, seq_len: int, rope_theta: float | None = None,
                   rope_scaling: RopeScaling | None = None) -> Llama:
    """A new ``Llama`` with ``max_seq_len = seq_len`` (and θ / scaling if given) holding a copy of ``model``'s
    weights."""
    changes = {"max_seq_len": seq_len}
    if rope_theta is not None:
        changes["rope_theta"] = rope_theta
    if rope_scaling is not None:
        changes["rope_scaling"] = rope_scaling
    device = next(model.parameters()).device
    longer = Llama(model.cfg.replace(**changes)).to(device)
    longer.load_state_dict(model.state_dict())
    return longer


def needle_items(tokenizer, texts: Sequence[str], seq_len: int, n_items: int, seed: int = 0,
                 depths: Sequence[float] = (0.1, 0.5, 0.9)) -> list[ChoiceItem]:
    """``n_items`` needle-in-a-haystack questions of about ``seq_len`` tokens (prompt + answer), the needle at each
    of ``depths`` (fraction of the haystack before it) in turn. ``texts``: held-out documents for the hay."""
    hay = " ".join(t.replace("\n", " ") for t in texts)
    hay_ids = tokenizer.encode(hay)
    question = " The secret number is"
    budget = seq_len - 1 - len(tokenizer.encode(question)) - len(tokenizer.encode(" The secret number is 0000.")) - 4
    if budget < 16 or len(hay_ids) < budget:
        raise ValueError(f"seq_len={seq_len} leaves {budget} tokens of hay and the texts hold {len(hay_ids)}; "
                         f"give a longer seq_len and at least {max(budget, 16)} tokens of text")
    rng = random.Random(f"needle:{seed}")
    items = []
    for i in range(n_items):
        start = rng.randrange(0, len(hay_ids) - budget + 1)
        numbers = rng.sample(range(1000, 10000), 4)
        needle = f" The secret number is {numbers[0]}."
        options = [f" {n}." for n in numbers]
        rng.shuffle(options)
        room = budget
        while True:                                 # decoding and re-encoding can merge tokens differently: check
            chunk = hay_ids[start:start + room]
            cut = int(len(chunk) * depths[i % len(depths)])
            prompt = tokenizer.decode(chunk[:cut]) + needle + tokenizer.decode(chunk[cut:]) + question
            over = 1 + len(tokenizer.encode(prompt)) + max(len(tokenizer.encode(o)) for o in options) - seq_len
            if over <= 0:
                break
            room -= over
        items.append(ChoiceItem(prompt, tuple(options), options.index(f" {numbers[0]}."), id=f"needle:{seed}:{i}"))
    return items


def long_context_stage(model: Llama, tokenizer, train: PackedData, short_val: PackedData, hay_texts: Sequence[str],
                       stages: Sequence[ContextStage], batch_tokens: int, lr: float, short_seq_len: int,
                       n_needles: int = 12, progress: bool = True, start_token: int = 0,
                       final_lr: float | None = None, short_windows: int | None = None) -> tuple[Llama, list[dict]]:
    """Run ``stages`` in order from ``model``; return the final model and one row per stage (plus a first row for the
    start, measured at ``short_seq_len``): ``seq_len``, ``rope_theta``, ``short_window_losses`` (the mean loss of each
    of the first ``short_windows`` validation windows of ``short_seq_len`` tokens, all by default: for a paired test
    against the start), ``short_loss`` (their mean), ``needle_acc`` (at the row's length; None where the length holds
    no haystack) and ``induction`` (``induction_score``).

    Data: the stages read ``train`` in order from stream position ``start_token`` (pass the tokens the model has
    already trained on, so the stages see new text), each one where the previous stopped. LR per stage: a short
    warm-up to ``lr``, then a cosine to ``final_lr`` (None: constant ``lr``)."""
    rows = []
    vocab = model.cfg.vocab_size

    def measure(m: Llama, seq_len: int) -> dict:
        try:
            needles = needle_items(tokenizer, hay_texts, seq_len, n_needles)
            needle_acc = score_choices(m, tokenizer, needles, max_len=seq_len)["acc"]
        except ValueError:                          # too short a context for a needle and a haystack
            needle_acc = None
        windows = window_losses(m, short_val, short_seq_len, short_windows)        # (n_windows,)
        return {"seq_len": seq_len, "rope_theta": m.cfg.rope_theta, "needle_acc": needle_acc,
                "short_loss": float(windows.mean()), "short_window_losses": windows.tolist(),
                "induction": induction_score(m, vocab, length=min(64, m.cfg.max_seq_len // 2),
                                             low_id=min(256, vocab - 2))}

    rows.append(measure(model, short_seq_len))
    position = start_token
    for stage in stages:
        model = extend_context(model, stage.seq_len, stage.rope_theta, stage.rope_scaling)
        if stage.steps:
            rows_per_batch = max(1, batch_tokens // stage.seq_len)
            schedule = LRSchedule(lr, max(1, stage.steps // 10), stage.steps, lr if final_lr is None else final_lr)
            cfg = TrainConfig(steps=stage.steps, schedule=schedule,
                              batch=BatchRamp.constant(rows_per_batch, stage.seq_len),
                              micro_batch_size=rows_per_batch, progress=progress)
            trainer = Trainer(model, cfg, train)
            if position + rows_per_batch * stage.seq_len + 1 > len(train):
                raise ValueError(f"start_token={start_token} leaves too little of the training stream "
                                 f"({len(train)} tokens) for the stage of {stage.seq_len}; pass a smaller start_token")
            trainer.loader.position = position      # new text; the loader wraps to the start if the stream ends
            trainer.fit()
            position = trainer.loader.position
        rows.append(dict(measure(model, stage.seq_len), steps=stage.steps))
    return model, rows
