"""Direct Preference Optimization with Llama 3's two changes (Rafailov et al. 2023, eq. 7; report §4.1.4).

DPO trains the policy ``π_θ`` directly on preference pairs ``(x, y_w ≻ y_l)`` against a frozen reference ``π_ref``
(the SFT model), without a reward model or sampling:

    L_DPO = −log σ( β·[log π_θ(y_w|x) − log π_ref(y_w|x)] − β·[log π_θ(y_l|x) − log π_ref(y_l|x)] )     (eq. 7)

``β·(log π_θ − log π_ref)`` is the *implicit reward* of a response; ``dpo_loss`` returns it for both sides. The report
(β = 0.1, lr 1e-5) adds:

- **masking formatting tokens**: header and termination tokens (``<|eot_id|>``...) are left out of both log-prob
  sums: they appear in chosen and rejected alike, so "the contrastive nature of the DPO loss" pushes their
  probability up and down at once, which "may lead to undesired model behaviors such as tail repetition" or ending
  turns abruptly (``train_on_special=False`` of ``minillm.post.sft.chat_example``);
- **an NLL term** on the chosen response, coefficient 0.2, normalised by its length (as in Pang et al. 2024), which
  keeps the chosen response's likelihood from falling while the margin grows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm
import torch.nn.functional as F
from torch import nn

from minillm.post.data import PreferenceTriple
from minillm.post.sft import (check_per_pair, check_run_config, optimizer_and_schedule, optimizer_step,
                              response_example, shuffled_cycle)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses ``(N,)`` (eq. 7) and the implicit rewards ``β·(log π_θ − log π_ref)`` of the chosen and
    rejected responses ``(N,)`` each (detached). Inputs: summed log-probabilities ``(N,)``."""
    check_per_pair(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                   ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps             # (N,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps       # (N,)
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def sequence_logps(model: nn.Module, tokens: torch.Tensor,
                   loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of the masked tokens of each row and their count: ``tokens, loss_mask (B, T)`` →
    ``(B,)`` float, ``(B,)`` int. Token ``t`` is scored by the logits at ``t − 1``."""
    logits = model(tokens)[:, :-1].float()                                 # (B, T-1, vocab)
    logp = logits.log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)   # (B, T-1)
    mask = loss_mask[:, 1:]
    return (logp * mask).sum(-1), mask.sum(-1)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode whose parameters take no gradient: the reference model."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def preference_batch(tokenizer, pairs: Sequence[tuple[Sequence[dict], str, str]], train_on_special: bool = False,
                     device=None) -> dict[str, torch.Tensor]:
    """``pairs`` of ``(prompt, better, worse)`` → right-padded ``tokens, loss_mask (2N, T)``: the N better responses,
    then the N worse ones; the mask covers each response's tokens (special tokens too with ``train_on_special``)."""
    examples = [response_example(tokenizer, p, r, train_on_special) for p, r, _ in pairs] + \
               [response_example(tokenizer, p, r, train_on_special) for p, _, r in pairs]
    T = max(len(e.input_ids) for e in examples)
    tokens = torch.full((len(examples), T), tokenizer.eos_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.bool)
    for i, e in enumerate(examples):
        tokens[i, :len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[i, :len(e.loss_mask)] = torch.tensor(e.loss_mask)
    return {"tokens": tokens.to(device), "loss_mask": mask.to(device)}


def triple_pairs(triples: Sequence[PreferenceTriple]) -> list[tuple[list[dict], str, str]]:
    """Every ranked ``(prompt, better, worse)`` pair of the triples."""
    return [(t.prompt, better, worse) for t in triples for better, worse in t.pairs()]


@dataclass(frozen=True)
class DPOConfig:
    """DPO run: β and the NLL coefficient of the report (0.1, 0.2); ``train_on_special=False`` masks formatting.

    In TRL's ``DPOConfig``: ``beta`` is ``beta``; ``nll_coef`` is ``rpo_alpha`` (RPO's weight on the chosen
    responses' NLL; TRL leaves it off by default, the report uses 0.2); the formatting mask has no TRL switch (TRL
    masks the prompt only). ``train_dpo``'s history keys ``reward_acc`` and ``reward_margin`` are TRL's logged
    ``rewards/accuracies`` and ``rewards/margins``."""

    steps: int = 50
    pairs_per_step: int = 16
    lr: float = 2e-4
    warmup_steps: int = 2
    final_lr: float = 2e-5
    beta: float = 0.1
    nll_coef: float = 0.2
    train_on_special: bool = False
    weight_decay: float = 0.0
    seed: int = 0
    progress: bool = True                  # a tqdm bar over the steps

    def __post_init__(self) -> None:
        check_run_config(self, ("steps", "pairs_per_step"))
        if self.beta <= 0:
            raise ValueError(f"DPOConfig.beta must be positive (the report uses 0.1), got {self.beta}")
        if self.nll_coef < 0:
            raise ValueError(f"DPOConfig.nll_coef must be >= 0 (0 disables the NLL term; the report uses 0.2), "
                             f"got {self.nll_coef}")


def dpo_objective(policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor], cfg: DPOConfig
                  ) -> tuple[torch.Tensor, dict]:
    """The loss of one batch (``preference_batch``): mean DPO loss + ``nll_coef`` × the chosen responses' NLL per
    token; and its metrics. The reference runs under ``no_grad``: no gradient can reach it."""
    tokens, mask = batch["tokens"], batch["loss_mask"]
    n = tokens.shape[0] // 2
    with torch.no_grad():
        ref_logps, _ = sequence_logps(reference, tokens, mask)           # (2N,)
    logps, counts = sequence_logps(policy, tokens, mask)                   # (2N,), (2N,)
    losses, chosen_r, rejected_r = dpo_loss(logps[:n], logps[n:], ref_logps[:n], ref_logps[n:], cfg.beta)
    nll = -(logps[:n] / counts[:n].clamp(min=1)).mean()                    # per token of the chosen responses
    loss = losses.mean() + cfg.nll_coef * nll
    return loss, {"loss": loss.item(), "dpo_loss": losses.mean().item(), "nll": nll.item(),
                  "reward_acc": float((chosen_r > rejected_r).float().mean()),
                  "reward_margin": float((chosen_r - rejected_r).mean())}


def train_dpo(policy: nn.Module, tokenizer, triples: Sequence[PreferenceTriple], cfg: DPOConfig = DPOConfig(),
              reference: nn.Module | None = None) -> list[dict]:
    """DPO on every ranked pair of ``triples``, in place on ``policy``. ``reference`` defaults to a frozen copy of
    ``policy`` as it is now (the SFT model). Returns one history row per step."""
    pairs = triple_pairs(triples)
    if not pairs:
        raise ValueError("train_dpo got no preference pairs")
    reference = frozen_copy(policy) if reference is None else reference
    reference.eval()
    device = next(policy.parameters()).device
    optimizer, schedule = optimizer_and_schedule(policy, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.final_lr,
                                                 cfg.weight_decay)
    sampler = shuffled_cycle(len(pairs), torch.Generator().manual_seed(cfg.seed))
    history = []
    policy.train()
    for step in tqdm(range(cfg.steps), desc="DPO", disable=not cfg.progress):
        picked = [pairs[next(sampler)] for _ in range(cfg.pairs_per_step)]
        batch = preference_batch(tokenizer, picked, cfg.train_on_special, device)
        loss, metrics = dpo_objective(policy, reference, batch, cfg)
        loss.backward()
        metrics["grad_norm"] = optimizer_step(policy, optimizer, schedule.lr(step), 1.0)
        history.append({"step": step + 1, **metrics})
    policy.eval()
    return history
