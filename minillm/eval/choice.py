"""Multiple-choice scoring by log-likelihood, the way MMLU-style benchmarks are run on base models (report §5.1.1).

A base model is not asked to *write* "B": each option is appended to the question and the model's log-likelihood of
the option's tokens is computed,

    ll(option) = Σ_t log p(option_t | prompt, option_<t)

and the option with the highest score is the model's answer. Longer options collect more negative terms, so a
plain sum favours short options; two scores are kept (as ``lm-evaluation-harness`` does):

- ``acc``: argmax of the summed log-likelihood;
- ``acc_norm``: argmax of ``ll(option) / bytes(option)``, the log-likelihood per UTF-8 byte of the option text
  (the harness normalises by characters; bytes are the same for English and match bits per byte).

Which to quote depends on the options. Ours are near-equal in length (cloze options share the rest of the
sentence and differ in one word; arithmetic options are numbers a digit or a sign apart), so the headline is
``acc``, the plain sum (the likelihood of the whole completed text); per-byte normalisation then mostly adds a bias
towards longer options (measured on the fast base model: arithmetic ``acc`` 0.41, ``acc_norm`` 0.15, chance 0.25).
``acc_norm`` is the one to quote when option lengths differ a lot (MMLU's answer texts, HellaSwag endings).

Chance is ``1 / n_options``. Token ids: the prompt is ``[BOS] + encode(prompt)`` and each option is encoded on its
own (options start with a space, which the Llama 3 pre-tokenizer splits off anyway), so every option is scored
against the same prompt tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ChoiceItem:
    """One question: ``prompt`` text, ``options`` (continuations, usually starting with a space), the index of the
    correct one, and an ``id`` naming where it came from (document, task and index)."""

    prompt: str
    options: tuple[str, ...]
    answer: int
    id: str = ""

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError(f"ChoiceItem {self.id!r} needs at least 2 options, got {len(self.options)}")
        if not 0 <= self.answer < len(self.options):
            raise ValueError(f"ChoiceItem {self.id!r}: answer {self.answer} is not an index of its "
                             f"{len(self.options)} options")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"ChoiceItem {self.id!r} has repeated options {self.options}; options must differ")


@torch.no_grad()
def option_logprobs(model: nn.Module, context: Sequence[int], options: Sequence[Sequence[int]],
                    max_len: int | None = None) -> torch.Tensor:
    """Summed log-likelihood of each option given ``context`` (token ids): ``(n_options,)`` float64.

    The rows ``context + option`` are right-padded into one batch (padding comes after every scored token, so the
    causal mask keeps it out). ``max_len``: drop the oldest context tokens so that every row fits.
    """
    if not context or any(len(o) == 0 for o in options):
        raise ValueError("option_logprobs needs a non-empty context (start it with BOS) and non-empty options")
    longest = max(len(o) for o in options)
    if max_len is not None:
        if longest >= max_len:
            raise ValueError(f"an option of {longest} tokens leaves no room for context in max_len={max_len}")
        context = list(context)[-(max_len + 1 - longest):]                # keep the most recent context
    device = next(model.parameters()).device
    rows = [list(context) + list(o) for o in options]
    T = max(len(r) for r in rows) - 1
    tokens = torch.zeros(len(rows), T, dtype=torch.long)                    # (N, T) inputs
    targets = torch.zeros(len(rows), T, dtype=torch.long)                   # (N, T) next tokens
    scored = torch.zeros(len(rows), T, dtype=torch.bool)                    # (N, T) True on option tokens
    for i, (row, opt) in enumerate(zip(rows, options)):
        n = len(row) - 1
        tokens[i, :n] = torch.tensor(row[:-1])
        targets[i, :n] = torch.tensor(row[1:])
        scored[i, n - len(opt):n] = True
    logits = model(tokens.to(device))                                       # (N, T, vocab)
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, targets.to(device)[..., None])[..., 0]   # (N, T)
    return (logp.double() * scored.to(device)).sum(dim=1).cpu()             # (N,)


def score_choices(model: nn.Module, tokenizer, items: Sequence[ChoiceItem], max_len: int | None = None) -> dict:
    """Accuracy of ``model`` on ``items``: ``{"acc", "acc_norm", "n", "chance", "predictions", "predictions_norm",
    "nll_per_byte", "item_nll_per_byte", "item_answer_logprob"}`` (predictions: the chosen option index per item;
    ``item_answer_logprob``: per item, the log-probability of the right option among the options (their summed
    log-likelihoods softmaxed): a graded score that moves before the accuracy does; ``nll_per_byte``: the mean
    over items of the correct option's negative log-likelihood per UTF-8 byte, the report's "normalized NLL" of
    §3.2.1 that scaling-law forecasts start from). ``max_len`` defaults to the model's ``cfg.max_seq_len``."""
    if not items:
        raise ValueError("score_choices got no items; build some with cloze_benchmark or arithmetic_choice_benchmark")
    if max_len is None:
        max_len = getattr(getattr(model, "cfg", None), "max_seq_len", None)
    was_training = model.training
    model.eval()
    picks, picks_norm, nll, answer_lp = [], [], [], []
    for item in items:
        context = [tokenizer.bos_id, *tokenizer.encode(item.prompt)]
        options = [tokenizer.encode(o) for o in item.options]
        ll = option_logprobs(model, context, options, max_len)              # (n_options,)
        n_bytes = torch.tensor([max(1, len(o.encode("utf-8"))) for o in item.options], dtype=torch.float64)
        picks.append(int(ll.argmax()))
        picks_norm.append(int((ll / n_bytes).argmax()))
        nll.append(float(-ll[item.answer] / n_bytes[item.answer]))
        answer_lp.append(float(torch.log_softmax(ll, dim=0)[item.answer]))
    model.train(was_training)
    answers = [item.answer for item in items]
    return {"acc": sum(p == a for p, a in zip(picks, answers)) / len(items),
            "acc_norm": sum(p == a for p, a in zip(picks_norm, answers)) / len(items),
            "n": len(items), "chance": sum(1 / len(item.options) for item in items) / len(items),
            "predictions": picks, "predictions_norm": picks_norm, "nll_per_byte": sum(nll) / len(nll),
            "item_nll_per_byte": nll, "item_answer_logprob": answer_lp}
