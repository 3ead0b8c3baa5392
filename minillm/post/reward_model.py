"""The reward model: the Llama trunk with a scalar head, trained on ranked responses (report §4.1.2; Llama 2 §3.2.2).

    tokens (B, T) ─► Llama trunk (lm_head removed) ─► h (B, T, dim) ─► h at each response's last token ─► Linear(dim, 1)

The loss is Bradley-Terry's: for a preferred response ``c`` and a worse one ``r`` of the same prompt,

    L = −log σ(r_θ(x, c) − r_θ(x, r) − m)

with Llama 2's margin ``m`` (larger for clearer preferences). Llama 3 "remove[s] the margin term in the loss, as we
observe diminishing improvements after data scaling" and, where an *edited* response exists, ranks three responses
``edited > chosen > rejected`` — three pairs. It also packs them for speed: "we concatenate the prompt and multiple
responses into a single row during training with responses randomly shuffled" (§4.1.2). ``ranked_row`` builds such
a row: each response sees the prompt and itself (never the other responses) and restarts its RoPE positions where the
prompt ends, so its reward is exactly the one of ``prompt + response`` alone (``tests/test_post_reward.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm
import torch.nn.functional as F
from torch import nn

from minillm.model.attention import causal_mask
from minillm.post.data import PreferenceTriple
from minillm.post.sft import (check_per_pair, check_run_config, optimizer_and_schedule, optimizer_step,
                              response_example, shuffled_cycle)


class RewardModel(nn.Module):
    """A copy of ``base`` (a ``minillm.Llama``) whose lm_head is replaced by a scalar head ``dim → 1``.

    ``forward(tokens (B, T), ends (B, K))`` → rewards ``(B, K)`` read at positions ``ends`` (−1: none, reward 0);
    ``positions``/``mask`` as ``Llama.forward`` (packed ranked rows)."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.trunk = copy.deepcopy(base)
        self.trunk.output = nn.Identity()                               # the trunk now returns h (B, T, dim)
        self.head = nn.Linear(base.cfg.dim, 1)
        nn.init.zeros_(self.head.weight)                                # every reward starts at 0: σ(0) = ½
        nn.init.zeros_(self.head.bias)
        p = base.tok_embeddings.weight
        self.head.to(device=p.device, dtype=p.dtype)

    @property
    def cfg(self):
        return self.trunk.cfg

    def forward(self, tokens: torch.Tensor, ends: torch.Tensor, positions: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.trunk(tokens, positions=positions, mask=mask)          # (B, T, dim)
        index = ends.clamp(min=0)[..., None].expand(-1, -1, h.shape[-1])  # (B, K, dim)
        rewards = self.head(h.gather(1, index)).squeeze(-1).float()     # (B, K)
        return rewards.masked_fill(ends < 0, 0.0)

    @torch.no_grad()
    def score(self, sequences: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
        """Reward of each whole sequence (read at its last token), ``(N,)``; rows right-padded, plain causal mask."""
        device = self.head.weight.device
        out = []
        was_training = self.training
        self.eval()
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start:start + batch_size]
            tokens = torch.zeros(len(chunk), max(map(len, chunk)), dtype=torch.long, device=device)
            for i, s in enumerate(chunk):
                tokens[i, :len(s)] = torch.tensor(list(s), device=device)
            ends = torch.tensor([[len(s) - 1] for s in chunk], device=device)   # (b, 1)
            out.append(self(tokens, ends)[:, 0])
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0)


def reward_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float | None = None,
                reduction: str = "mean") -> torch.Tensor:
    """Bradley-Terry loss ``−log σ(r_c − r_r − m)`` of rewards ``(N,)`` each (Llama 2 eq. 1 with its margin;
    ``margin=None`` is Llama 3's loss). ``reduction``: ``"mean"`` or ``"none"`` (``(N,)``)."""
    per_pair_margin = isinstance(margin, torch.Tensor) and margin.ndim > 0
    check_per_pair(chosen=chosen, rejected=rejected, **({"margin": margin} if per_pair_margin else {}))
    diff = chosen - rejected - (0.0 if margin is None else margin)      # (N,)
    losses = -F.logsigmoid(diff)
    if reduction == "none":
        return losses
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return losses.mean()


def prompt_and_responses(tokenizer, prompt: Sequence[dict],
                         responses: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """Token ids of the prompt (through the assistant header) and of each response (content + end of turn)."""
    prompt_ids, out = None, []
    for text in responses:
        ex = response_example(tokenizer, prompt, text)
        head, tail = ex.input_ids[:ex.prompt_len], ex.input_ids[ex.prompt_len:]
        if prompt_ids is not None and head != prompt_ids:
            raise ValueError("responses changed how the prompt is encoded; cannot share one prompt")
        prompt_ids = head
        out.append(tail)
    return prompt_ids, out


@dataclass(frozen=True)
class RankedRow:
    """A prompt and its responses in one row: ``tokens``, ``positions``, ``segment`` ``(T,)`` (−1 prompt, ``k`` the
    k-th placed response); ``ends (K,)`` the last token of each placed response, ``ranks (K,)`` its rank (0 best)."""

    tokens: list[int]
    positions: list[int]
    segment: list[int]
    ends: list[int]
    ranks: list[int]


def ranked_row(prompt_ids: Sequence[int], ranked: Sequence[Sequence[int]], generator: torch.Generator | None = None
               ) -> RankedRow:
    """Pack ``prompt_ids`` and the responses ``ranked`` (best first) into one row, responses in a random order."""
    order = list(range(len(ranked)))                                   # placement k holds the order[k]-th best
    if generator is not None:
        order = torch.randperm(len(ranked), generator=generator).tolist()
    P = len(prompt_ids)
    tokens, positions, segment = list(prompt_ids), list(range(P)), [-1] * P
    ends, ranks = [], []
    for k, rank in enumerate(order):
        resp = list(ranked[rank])
        tokens += resp
        positions += range(P, P + len(resp))                            # every response continues the prompt
        segment += [k] * len(resp)
        ends.append(len(tokens) - 1)
        ranks.append(rank)
    return RankedRow(tokens, positions, segment, ends, ranks)


def collate_rows(rows: Sequence[RankedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows into ``tokens, positions (B, T)``, ``mask (B, 1, T, T)``, ``ends, ranks (B, K)`` (−1 padding).

    ``mask[q, k]``: causal, and key ``k`` is in the prompt or in the query's own response (padding sees padding)."""
    B, T, K = len(rows), max(len(r.tokens) for r in rows), max(len(r.ends) for r in rows)
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    positions = torch.zeros((B, T), dtype=torch.long)
    segment = torch.full((B, T), -2, dtype=torch.long)                  # −2: padding
    ends = torch.full((B, K), -1, dtype=torch.long)
    ranks = torch.full((B, K), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r.tokens)
        tokens[b, :n] = torch.tensor(r.tokens)
        positions[b, :n] = torch.tensor(r.positions)
        segment[b, :n] = torch.tensor(r.segment)
        ends[b, :len(r.ends)], ranks[b, :len(r.ranks)] = torch.tensor(r.ends), torch.tensor(r.ranks)
    same = segment[:, :, None] == segment[:, None, :]                   # (B, T, T): query, key in one segment
    to_prompt = (segment[:, None, :] == -1) & (segment[:, :, None] != -2)
    mask = (same | to_prompt) & causal_mask(T, T)                       # (B, T, T)
    return {"tokens": tokens, "positions": positions, "mask": mask[:, None], "ends": ends, "ranks": ranks}


def ranked_pair_loss(rewards: torch.Tensor, ranks: torch.Tensor,
                     margin: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean Bradley-Terry loss over every (better, worse) pair of each row, and the pairs' accuracy.
    ``rewards, ranks (B, K)`` (rank −1: no response)."""
    valid = ranks >= 0
    better = (ranks[:, :, None] < ranks[:, None, :]) & valid[:, :, None] & valid[:, None, :]   # (B, K, K)
    chosen = rewards[:, :, None].expand_as(better)[better]             # (pairs,)
    rejected = rewards[:, None, :].expand_as(better)[better]
    return reward_loss(chosen, rejected, margin), (chosen > rejected).float().mean()


@dataclass(frozen=True)
class RewardConfig:
    """Reward-model training: ``triples_per_step`` ranked rows a step, AdamW with warm-up + cosine; no margin."""

    steps: int = 100
    triples_per_step: int = 16
    lr: float = 1e-3
    warmup_steps: int = 5
    final_lr: float = 1e-4
    weight_decay: float = 0.0
    margin: float | None = None            # Llama 3 dropped Llama 2's margin
    seed: int = 0
    progress: bool = True                  # a tqdm bar over the steps

    def __post_init__(self) -> None:
        check_run_config(self, ("steps", "triples_per_step"))
        if self.margin is not None and self.margin < 0:
            raise ValueError(f"RewardConfig.margin must be None or >= 0, got {self.margin}")


def train_reward_model(base: nn.Module, tokenizer, triples: Sequence[PreferenceTriple],
                       cfg: RewardConfig = RewardConfig()) -> tuple[RewardModel, list[dict]]:
    """A ``RewardModel`` initialised from ``base`` and trained on ranked rows of ``triples``; returns it (in eval
    mode) and one history row per step (``loss``, ``pair_acc``)."""
    if not triples:
        raise ValueError("train_reward_model got no preference triples")
    rm = RewardModel(base)
    encoded = [prompt_and_responses(tokenizer, t.prompt, t.ranked()) for t in triples]
    optimizer, schedule = optimizer_and_schedule(rm, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.final_lr,
                                                 cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = shuffled_cycle(len(encoded), generator)          # shares the generator with the response shuffles
    device = rm.head.weight.device
    history = []
    rm.train()
    for step in tqdm(range(cfg.steps), desc="reward model", disable=not cfg.progress):
        rows = []
        for _ in range(cfg.triples_per_step):
            prompt_ids, ranked = encoded[next(sampler)]
            rows.append(ranked_row(prompt_ids, ranked, generator))
        batch = {k: v.to(device) for k, v in collate_rows(rows, tokenizer.eos_id).items()}
        rewards = rm(batch["tokens"], batch["ends"], batch["positions"], batch["mask"])   # (B, K)
        loss, acc = ranked_pair_loss(rewards, batch["ranks"], cfg.margin)
        loss.backward()
        grad_norm = optimizer_step(rm, optimizer, schedule.lr(step), 1.0)
        history.append({"step": step + 1, "loss": loss.item(), "pair_acc": float(acc), "grad_norm": grad_norm})
    return rm.eval(), history


def reward_scores(rm: RewardModel, tokenizer, prompts: Sequence[Sequence[dict]],
                  responses: Sequence[str]) -> torch.Tensor:
    """Reward of each ``(prompt, response)``, ``(N,)``."""
    seqs = [response_example(tokenizer, p, r).input_ids for p, r in zip(prompts, responses, strict=True)]
    return rm.score(seqs)


def pair_accuracy(rm: RewardModel, tokenizer, triples: Sequence[PreferenceTriple]) -> dict:
    """Held-out accuracy: the share of ranked pairs the RM orders right, over all pairs and over (chosen, rejected)
    pairs alone. Each response is scored on its own (``prompt + response``), not in a packed row."""
    prompts, responses = [], []
    for t in triples:
        for r in t.ranked():
            prompts.append(t.prompt)
            responses.append(r)
    scores = reward_scores(rm, tokenizer, prompts, responses).tolist()
    right, total, cr_right = 0, 0, 0
    at = 0
    for t in triples:
        ranked = scores[at:at + len(t.ranked())]
        at += len(ranked)
        for i in range(len(ranked)):
            for j in range(i + 1, len(ranked)):
                right += ranked[i] > ranked[j]
                total += 1
        cr_right += ranked[-2] > ranked[-1]                             # chosen vs rejected
    return {"accuracy": right / total, "chosen_vs_rejected": cr_right / len(triples), "n_pairs": total}
