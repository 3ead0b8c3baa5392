"""Rejection sampling: K samples per prompt from the current best policy, keep the best one (report §4.2.2).

"For each prompt collected during human annotation we sample K (typically between 10 and 30) outputs from the latest
chat model policy ... and use our reward model to select the best candidate." The winners become SFT data for the
next round. The samples are drawn through ``minillm.infer.LLMEngine`` with ``SamplingParams(n=K)``: the prompt is
prefilled once and its KV blocks are shared by the K continuations (copy-on-write), the PagedAttention setting in
which the report (§4.2.2) more than doubles rejection-sampling throughput.

Who picks the best (``RejectionConfig.selector``):

- ``"rm"``: the reward model alone (the report's general recipe);
- ``"checker"``: a verifier (for maths, the final answer), ties broken by sample order;
- ``"rm+checker"``: correct samples first, the RM orders them (the report filters reasoning data by final answer,
  §4.3.3, and ranks with reward models). Prompts with no correct sample give no SFT example.

Each prompt whose best and worst samples differ also yields an *on-policy* preference triple: best ≻ worst, with the
reference answer as the "edited" response — the analogue of annotators ranking and editing the latest model's samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from minillm.infer import LLMEngine, SamplingParams
from minillm.infer.engine import CompletionOutput
from minillm.post.data import Chat, PreferenceTriple
from minillm.post.reward_model import RewardModel, reward_scores

SELECTORS = ("rm", "checker", "rm+checker")


def sample_completions(model, tokenizer, prompts: Sequence[Chat], n: int, temperature: float = 1.0,
                       max_tokens: int = 16, top_p: float | None = None, seed: int = 0,
                       block_size: int = 16, kv_stats: dict | None = None) -> list[list[CompletionOutput]]:
    """``n`` completions of each chat prompt (the assistant's turn, ended by ``<|eot_id|>`` only, which is left out
    of ``token_ids``), through one ``LLMEngine`` whose KV pool fits every sample without sharing. ``kv_stats``, when
    given, receives the pool's ``peak_blocks``, the ``unshared_blocks`` the same samples would hold if each kept its
    own copy of its prompt, and ``prompt_blocks``: the full prompt blocks, each held once for its ``n`` samples."""
    ids = [tokenizer.encode_chat(p, add_generation_prompt=True) for p in prompts]
    blocks = sum(n * math.ceil((len(p) + max_tokens) / block_size) for p in ids) + len(ids)
    engine = LLMEngine(model, num_blocks=blocks, block_size=block_size, tokenizer=tokenizer, seed=seed)
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                            stop_token_ids=[tokenizer.eot_id], ignore_eos=True)   # the turn ends with <|eot_id|> only
    outs = engine.generate(ids, params)
    if kv_stats is not None:
        kv_stats.update(block_size=block_size, peak_blocks=engine.peak_used_blocks,
                        prompt_blocks=sum(len(p) // block_size for p in ids),
                        unshared_blocks=sum(math.ceil((len(p) + len(c.token_ids)) / block_size)
                                            for p, o in zip(ids, outs) for c in o.outputs))
    return [o.outputs for o in outs]


@dataclass(frozen=True)
class RejectionConfig:
    """K samples per prompt at ``temperature`` (the report: K = 10-30), ``max_tokens`` each; ``selector`` as above."""

    k: int = 8
    temperature: float = 0.8
    top_p: float | None = None
    max_tokens: int = 16
    selector: str = "rm+checker"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"RejectionConfig.k must be an int >= 2 (samples to choose from), got {self.k!r}")
        if self.temperature <= 0:
            raise ValueError(f"RejectionConfig.temperature must be > 0 (0 would give K equal samples), "
                             f"got {self.temperature}")
        if self.selector not in SELECTORS:
            raise ValueError(f"RejectionConfig.selector must be one of {SELECTORS}, got {self.selector!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"RejectionConfig.max_tokens must be a positive int, got {self.max_tokens!r}")


@dataclass
class RejectionResult:
    """``chats``: prompt + best response, the new SFT data; ``samples (P, K)`` texts with their ``rewards`` and
    ``checks`` ``(P, K)`` tensors (None when not computed); ``preferences``: on-policy triples; ``stats``."""

    chats: list[Chat]
    samples: list[list[str]]
    rewards: torch.Tensor | None
    checks: torch.Tensor | None
    best: list[int | None]
    preferences: list[PreferenceTriple] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def rejection_sample(model, tokenizer, prompts: Sequence[Chat], cfg: RejectionConfig = RejectionConfig(),
                     reward_model: RewardModel | None = None, checker: Callable[[int, str], float] | None = None,
                     references: Sequence[str] | None = None) -> RejectionResult:
    """Sample ``cfg.k`` responses per prompt, score them (``reward_model`` and/or ``checker(prompt_index, text)``),
    keep the best (see the module docstring). ``references[i]``: the edited response of prompt ``i``'s triple."""
    if "rm" in cfg.selector and reward_model is None:
        raise ValueError(f"selector {cfg.selector!r} needs a reward_model; or use selector='checker'")
    if "checker" in cfg.selector and checker is None:
        raise ValueError(f"selector {cfg.selector!r} needs a checker; or use selector='rm'")
    kv: dict = {}
    completions = sample_completions(model, tokenizer, prompts, cfg.k, cfg.temperature, cfg.max_tokens, cfg.top_p,
                                     cfg.seed, kv_stats=kv)
    samples = [[c.text for c in cs] for cs in completions]
    P, K = len(prompts), cfg.k
    rewards = checks = None
    if reward_model is not None:
        flat_prompts = [p for p in prompts for _ in range(K)]
        rewards = reward_scores(reward_model, tokenizer, flat_prompts, [t for s in samples for t in s]).view(P, K)
    if checker is not None:
        checks = torch.tensor([[checker(i, t) for t in s] for i, s in enumerate(samples)], dtype=torch.float)
    use_rm, use_check = "rm" in cfg.selector, "checker" in cfg.selector

    def key(i: int, j: int) -> tuple[float, float]:
        return (float(checks[i, j]) if use_check else 0.0, float(rewards[i, j]) if use_rm else 0.0)

    chats, best, prefs = [], [], []
    for i, prompt in enumerate(prompts):
        order = sorted(range(K), key=lambda j: key(i, j), reverse=True)   # stable: ties keep sample order
        top, bottom = order[0], order[-1]
        if use_check and checks[i, top] < 1.0:
            best.append(None)                                              # no correct sample: nothing to learn
        else:
            best.append(top)
            chats.append([*prompt, {"role": "assistant", "content": samples[i][top]}])
        if key(i, top) > key(i, bottom):
            edited = references[i] if references is not None and references[i] != samples[i][top] else None
            prefs.append(PreferenceTriple(list(prompt), samples[i][top], samples[i][bottom], edited))
    stats = {"prompts": P, "k": K, "kept": len(chats), "preferences": len(prefs),
             **{f"kv_{name}": value for name, value in kv.items()}}
    if checks is not None:
        stats.update(pass_rate=float((checks == 1.0).float().mean()),
                     best_of_k=float((checks == 1.0).any(1).float().mean()))
    if rewards is not None:
        stats.update(mean_reward=float(rewards.mean()), mean_best_reward=float(rewards.max(1).values.mean()))
    return RejectionResult(chats, samples, rewards, checks, best, prefs, stats)
