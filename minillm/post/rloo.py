"""REINFORCE with a leave-one-out baseline (RLOO; Ahmadian et al. 2024, "Back to Basics", §3.2-3.3).

Llama 3 chose DPO over on-policy RL (PPO) for its lower compute at scale (report §4.1.4); RLOO is the simplest
on-policy alternative to compare it with. For each prompt ``x`` draw ``k`` responses ``y_1..y_k`` from the policy,
give each a *sequence-level* reward with a KL penalty towards the reference model,

    R(x, y_i) = r(x, y_i) − β_KL · [log π_θ(y_i|x) − log π_ref(y_i|x)]              (the sampled-sequence KL estimate)

and use the mean reward of the *other* k − 1 samples as the baseline (no value network):

    A_i = R_i − 1/(k−1) Σ_{j≠i} R_j          ∇J ≈ 1/k Σ_i A_i ∇ log π_θ(y_i|x)

The baseline does not depend on ``y_i``, so the estimate stays unbiased while its variance drops. The k samples come
from one ``LLMEngine`` request with ``n=k`` (shared prompt blocks), as in rejection sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm
from torch import nn

from minillm.post.data import Chat
from minillm.post.dpo import frozen_copy, sequence_logps
from minillm.post.rejection_sampling import sample_completions
from minillm.post.sft import check_run_config, optimizer_and_schedule, shuffled_cycle
from minillm.train.optim import clip_gradients


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages of ``rewards (P, k)`` → ``(P, k)``: each reward minus the mean of its prompt's other
    ``k − 1`` rewards (equivalently ``k/(k−1)·(r − mean)``)."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, k) with k >= 2 samples per prompt, got {tuple(rewards.shape)}")
    k = rewards.shape[1]
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)    # (P, k): mean of the others
    return rewards - baseline


def kl_penalised_rewards(rewards: torch.Tensor, policy_logps: torch.Tensor, ref_logps: torch.Tensor,
                         kl_coef: float) -> torch.Tensor:
    """``r − β_KL·(log π_θ(y|x) − log π_ref(y|x))``, all ``(P, k)``; the log-ratio is detached: a reward, not a
    loss."""
    return rewards - kl_coef * (policy_logps.detach() - ref_logps)


@dataclass(frozen=True)
class RLOOConfig:
    """On-policy run: ``prompts_per_step`` prompts × ``k`` samples each step, KL coefficient ``kl_coef``."""

    steps: int = 20
    prompts_per_step: int = 8
    k: int = 4
    lr: float = 1e-4
    warmup_steps: int = 0
    final_lr: float = 1e-5
    kl_coef: float = 0.05
    temperature: float = 1.0               # 1.0: the samples come from π_θ itself (on-policy)
    max_tokens: int = 16
    seed: int = 0
    progress: bool = True                  # a tqdm bar over the steps

    def __post_init__(self) -> None:
        check_run_config(self, ("steps", "prompts_per_step", "max_tokens"))
        if not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"RLOOConfig.k must be an int >= 2: the baseline needs another sample, got {self.k!r}")
        if self.kl_coef < 0:
            raise ValueError(f"RLOOConfig.kl_coef must be >= 0, got {self.kl_coef}")
        if self.temperature <= 0:
            raise ValueError(f"RLOOConfig.temperature must be > 0, got {self.temperature}")


def _sequences(tokenizer, prompts: Sequence[Chat], completions, device) -> dict[str, torch.Tensor]:
    """Prompt + sampled tokens (+ ``<|eot_id|>`` when the sample stopped): right-padded ``tokens, loss_mask (P·k, T)``
    with the mask on the sampled tokens."""
    rows, masks = [], []
    for prompt, comps in zip(prompts, completions):
        head = tokenizer.encode_chat(prompt, add_generation_prompt=True)
        for c in comps:
            tail = list(c.token_ids) + ([tokenizer.eot_id] if c.finish_reason == "stop" else [])
            rows.append(head + tail)
            masks.append([False] * len(head) + [True] * len(tail))
    T = max(map(len, rows))
    tokens = torch.full((len(rows), T), tokenizer.eos_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        tokens[i, :len(r)], mask[i, :len(m)] = torch.tensor(r), torch.tensor(m)
    return {"tokens": tokens.to(device), "loss_mask": mask.to(device)}


def rloo_step(policy: nn.Module, reference: nn.Module, optimizer: torch.optim.Optimizer, tokenizer,
              prompts: Sequence[Chat], reward_fn: Callable[[int, str], float], cfg: RLOOConfig, seed: int = 0) -> dict:
    """Sample, reward, and take one REINFORCE step on ``policy``; ``reward_fn(prompt_index, text)``."""
    completions = sample_completions(policy, tokenizer, prompts, cfg.k, cfg.temperature, cfg.max_tokens, seed=seed)
    rewards = torch.tensor([[reward_fn(i, c.text) for c in cs] for i, cs in enumerate(completions)])   # (P, k)
    device = next(policy.parameters()).device
    batch = _sequences(tokenizer, prompts, completions, device)
    policy.train()
    with torch.no_grad():
        ref_logps, _ = sequence_logps(reference, batch["tokens"], batch["loss_mask"])   # (P·k,)
    logps, _ = sequence_logps(policy, batch["tokens"], batch["loss_mask"])              # (P·k,)
    P, k = rewards.shape
    total = kl_penalised_rewards(rewards.to(device), logps.view(P, k), ref_logps.view(P, k), cfg.kl_coef)
    advantages = rloo_advantages(total)                                                  # (P, k)
    loss = -(advantages.detach() * logps.view(P, k)).mean()
    loss.backward()
    grad_norm = clip_gradients(policy, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    kl = (logps.detach() - ref_logps).mean()
    return {"loss": loss.item(), "reward": float(rewards.mean()), "kl": float(kl), "grad_norm": grad_norm}


def train_rloo(policy: nn.Module, tokenizer, prompts: Sequence[Chat], reward_fn: Callable[[int, str], float],
               cfg: RLOOConfig = RLOOConfig(), reference: nn.Module | None = None) -> list[dict]:
    """RLOO in place on ``policy`` over ``prompts`` (cycled in a seeded order); ``reward_fn(i, text)`` scores a
    response to ``prompts[i]``. ``reference`` defaults to a frozen copy of the policy now. One row per step."""
    if not prompts:
        raise ValueError("train_rloo got no prompts")
    reference = frozen_copy(policy) if reference is None else reference
    optimizer, schedule = optimizer_and_schedule(policy, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.final_lr)
    sampler = shuffled_cycle(len(prompts), torch.Generator().manual_seed(cfg.seed))
    history = []
    for step in tqdm(range(cfg.steps), desc="RLOO", disable=not cfg.progress):
        picked = [next(sampler) for _ in range(cfg.prompts_per_step)]
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr(step)
        row = rloo_step(policy, reference, optimizer, tokenizer, [prompts[i] for i in picked],
                        lambda j, text: reward_fn(picked[j], text), cfg, seed=cfg.seed * 100_003 + step)
        history.append({"step": step + 1, **row})
    policy.eval()
    return history
