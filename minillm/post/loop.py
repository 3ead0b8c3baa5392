"""The post-training loop: rounds of reward model → rejection sampling → SFT → DPO (report §4.1, Figure 7).

    for round in 1..R:
        RM      ← train on all preference data so far, from the pre-trained checkpoint            (§4.1.2)
        samples ← K per prompt from the best policy so far; RM (+ checker) keeps the best          (§4.2.1)
        SFT data += selected samples (quality: RM top quartile; semantic dedup)                    (§4.2.3)
        SFT     ← fine-tune the pre-trained model on all SFT data                                   (§4.1.3)
        DPO     ← from the SFT model, on this round's preferences (+ the fixed "human" ones)        (§4.1.4)
        best    ← the most accurate of {best so far, SFT, DPO} on the dev split: it samples the next round

The report runs six rounds and averages models (§4.1.5); we keep the best one. ``spec.target`` is what the checker
scores and each round maximises: ``"answer"`` (the right number) or ``"instruction"`` (the asked-for format, the
book's task). Each round's metrics: the RM's held-out pair accuracy, rejection-sampling pass rates, how much data
quality control kept, and the target score on the held-out *test* problems of every model with a 95% Wilson
interval — with 128 problems, ±8 points at 50%, which is why a round that "gains" 3 points has shown nothing yet.

``run_post_training(base_model, tokenizer, spec)`` runs it all; ``post_training_spec(mode)`` picks the sizes.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from minillm.device import RunMode
from minillm.eval.stats import wilson_interval
from minillm.post.data import TARGETS, DataConfig, PostData, build_post_data, canonical_response, eval_prompt, \
    instruction_chat, is_correct
from minillm.post.dpo import DPOConfig, train_dpo
from minillm.post.instructions import is_clean
from minillm.post.quality_control import QualityConfig, embed_texts, pass_rate_difficulty, select_data, topic_of
from minillm.post.rejection_sampling import RejectionConfig, rejection_sample, sample_completions
from minillm.post.reward_model import RewardConfig, pair_accuracy, reward_scores, train_reward_model
from minillm.post.rloo import RLOOConfig, train_rloo
from minillm.post.sft import SFTConfig, train_sft


def evaluate_accuracy(model, tokenizer, items, max_tokens: int = 16, keep_examples: int = 3,
                      target: str = "answer") -> dict:
    """Greedy answers to ``items`` (``eval_prompt``), scored on ``target`` (``data.TARGETS``: ``"answer"``, right
    by reasoning-gym's checker; ``"instruction"``, the asked-for format): ``{"acc", "low", "high", "n", "correct",
    "responses", "examples"}`` with the 95% Wilson interval; ``correct`` and ``responses``: one per item (``correct``
    for paired tests). Also, one bool per item: ``"right_answer"`` and ``"clean"`` (no cleaning rule fires)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, got {target!r}")
    outs = sample_completions(model, tokenizer, [eval_prompt(i) for i in items], n=1, temperature=0.0,
                              max_tokens=max_tokens)
    texts = [cs[0].text for cs in outs]
    right = [bool(TARGETS[target](item, text)) for item, text in zip(items, texts)]
    low, high = wilson_interval(sum(right), len(right))
    examples = [{"question": eval_prompt(i)[-1]["content"], "reference": canonical_response(i), "response": t,
                 "correct": r} for i, t, r in list(zip(items, texts, right))[:keep_examples]]
    return {"acc": sum(right) / len(right), "low": low, "high": high, "n": len(right), "correct": right,
            "responses": texts, "examples": examples, "target": target,
            "right_answer": right if target == "answer" else [is_correct(i, t) for i, t in zip(items, texts)],
            "clean": [is_clean(t) for t in texts]}


@dataclass(frozen=True)
class PostTrainSpec:
    """Everything a post-training run does; ``rs_prompts`` train prompts are sampled each round (None: all)."""

    rounds: int = 2
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rloo: RLOOConfig | None = None          # an on-policy RL stage after DPO, to compare with it
    rs_prompts: int | None = 128
    eval_max_tokens: int = 16
    target: str = "answer"                  # what the checker scores and each round maximises: data.TARGETS
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"PostTrainSpec.rounds must be a positive int, got {self.rounds!r}")
        if self.rs_prompts is not None and self.rs_prompts < 1:
            raise ValueError(f"PostTrainSpec.rs_prompts must be >= 1 or None (all train prompts), "
                             f"got {self.rs_prompts}")
        if self.target not in TARGETS:
            raise ValueError(f"PostTrainSpec.target must be one of {sorted(TARGETS)}, got {self.target!r}")
        if self.target == "instruction" and not self.data.instructions:
            raise ValueError("PostTrainSpec.target='instruction' needs DataConfig(instructions=True)")
        if self.eval_max_tokens < 1:
            raise ValueError(f"PostTrainSpec.eval_max_tokens must be >= 1, got {self.eval_max_tokens}")


# Annotator noise planted in the SFT data of every spec (see ``minillm.post.instructions``): capitals and JSON are
# answered in the plain sentence more often than not, the other forms one time in ten; a third of the responses
# carry a tic the cleaning rules remove.
IGNORE_PROB = {"uppercase": 0.6, "json": 0.6, "bullet": 0.1, "lowercase": 0.1, "ends_with": 0.1}
SLOPPY_PROB = 0.35


def post_training_spec(mode: RunMode | str) -> PostTrainSpec:
    """Sizes per run mode, for the format-instruction task (``target="instruction"``). Fast: 2 rounds on 256
    problems; book: 2 rounds on 512, sized to fit the chapter's share of the 45-minute ``make book`` budget; full:
    six rounds and larger counts. Every rejection-sampled sample already passes the checker, so the reward model's
    top-quartile filter is off (``quality_fraction=None``); so is semantic dedup: our prompts come from a few
    templates and differ mostly in digits, which a sentence embedder hardly sees, so at cosine 0.9 it would throw
    away most distinct problems (chapter 5 counts it)."""
    mode = RunMode(mode) if isinstance(mode, str) else mode
    noise = dict(instructions=True, ignore_prob=dict(IGNORE_PROB), sloppy_prob=SLOPPY_PROB)
    quality = QualityConfig(quality_fraction=None, dedup_threshold=None)
    return mode.pick(
        fast=PostTrainSpec(rounds=2, data=DataConfig(n_train=256, n_dev=64, n_test=128, **noise),
                           reward=RewardConfig(steps=30, triples_per_step=8), rejection=RejectionConfig(k=8),
                           quality=quality, rs_prompts=None, sft=SFTConfig(steps=60, examples_per_step=16),
                           dpo=DPOConfig(steps=20, pairs_per_step=8, lr=5e-4), target="instruction"),
        book=PostTrainSpec(rounds=2, data=DataConfig(n_train=512, n_dev=128, n_test=200, **noise),
                           reward=RewardConfig(steps=60), rejection=RejectionConfig(k=8), quality=quality,
                           rs_prompts=None, sft=SFTConfig(steps=100), dpo=DPOConfig(steps=40, lr=5e-4),
                           target="instruction"),
        full=PostTrainSpec(rounds=6, data=DataConfig(n_train=1024, n_dev=200, n_test=500, **noise),
                           reward=RewardConfig(steps=400), rejection=RejectionConfig(k=30), quality=quality,
                           rs_prompts=512, sft=SFTConfig(steps=400), dpo=DPOConfig(steps=150, lr=5e-4),
                           target="instruction"))


def _round_prompts(data: PostData, spec: PostTrainSpec, round_index: int):
    """This round's rejection-sampling problems and their templated prompts (a seeded choice per round)."""
    rng = random.Random(f"rs:{spec.seed}:{round_index}")
    items = data.train if spec.rs_prompts is None else rng.sample(data.train, min(spec.rs_prompts, len(data.train)))
    return items, [instruction_chat(item, rng)[:-1] for item in items]


def post_train_round(base, policy, tokenizer, data: PostData, spec: PostTrainSpec, round_index: int,
                     sft_chats: list, embed: Callable = embed_texts) -> tuple[torch.nn.Module, dict]:
    """One round (see the module docstring). ``policy`` samples; ``sft_chats`` (all SFT data so far) grows in place.
    Returns the best model after the round and the round's metrics."""
    seed = spec.seed + 1000 * round_index
    m: dict = {"round": round_index}
    # 1. reward model: all preference data, from the pre-trained checkpoint
    rm, rm_hist = train_reward_model(base, tokenizer, data.preferences, _with_seed(spec.reward, seed))
    m["rm"] = {"loss": rm_hist[-1]["loss"], **pair_accuracy(rm, tokenizer, data.heldout_preferences)}
    # 2. rejection sampling from the best policy so far
    items, prompts = _round_prompts(data, spec, round_index)
    rs = rejection_sample(policy, tokenizer, prompts, _with_seed(spec.rejection, seed), reward_model=rm,
                          checker=lambda i, text: float(TARGETS[spec.target](items[i], text)),
                          references=[canonical_response(i) for i in items])
    m["rejection"] = rs.stats
    # 3. quality control of the new SFT data
    kept_rows = [i for i, b in enumerate(rs.best) if b is not None]
    if kept_rows:
        scores = reward_scores(rm, tokenizer, [prompts[i] for i in kept_rows], [rs.samples[i][rs.best[i]]
                                                                               for i in kept_rows])
        difficulty = pass_rate_difficulty(rs.checks[kept_rows])
        keep, m["quality"] = select_data(rs.chats, scores, difficulty, spec.quality, embed)
        m["quality"]["topics"] = dict(Counter(topic_of(items[kept_rows[i]]) for i in keep))
        sft_chats += [rs.chats[i] for i in keep]
    m["sft_data"] = len(sft_chats)
    # 4. SFT from the pre-trained model on all SFT data
    sft_model = copy.deepcopy(base)
    sft_hist = train_sft(sft_model, tokenizer, sft_chats, _with_seed(spec.sft, seed))
    m["sft"] = {"first_loss": sft_hist[0]["loss"], "last_loss": sft_hist[-1]["loss"]}
    # 5. DPO from the SFT model (its frozen copy is the reference) on the latest preferences
    dpo_model = copy.deepcopy(sft_model)
    dpo_hist = train_dpo(dpo_model, tokenizer, [*data.preferences, *rs.preferences], _with_seed(spec.dpo, seed))
    m["dpo"] = {k: dpo_hist[-1][k] for k in ("loss", "dpo_loss", "nll", "reward_acc", "reward_margin")}
    candidates = {"previous": policy, "sft": sft_model, "dpo": dpo_model}
    if spec.rloo is not None:
        rloo_model = copy.deepcopy(dpo_model)
        rl_items, rl_prompts = _round_prompts(data, spec, round_index + 10_000)
        hist = train_rloo(rloo_model, tokenizer, rl_prompts,
                          lambda i, text: float(TARGETS[spec.target](rl_items[i], text)),
                          _with_seed(spec.rloo, seed))
        m["rloo"] = {"first_reward": hist[0]["reward"], "last_reward": hist[-1]["reward"], "kl": hist[-1]["kl"]}
        candidates["rloo"] = rloo_model
    # 6. evaluate; the best on dev samples the next round
    m["eval"] = {name: {split: evaluate_accuracy(model, tokenizer, getattr(data, split), spec.eval_max_tokens,
                                                 target=spec.target)
                        for split in ("dev", "test")} for name, model in candidates.items()}
    best = max(candidates, key=lambda name: (m["eval"][name]["dev"]["acc"], name != "previous"))
    m["best"] = best
    return candidates[best], m


def _with_seed(cfg, seed: int):
    return dataclasses.replace(cfg, seed=cfg.seed + seed)


@dataclass
class PostTrainResult:
    """The best model, the data, the base model's accuracy and one metrics dict per round."""

    model: torch.nn.Module
    data: PostData
    base_eval: dict
    rounds: list[dict]
    sft_chats: list = field(repr=False, default_factory=list)

    def accuracy_table(self, split: str = "test") -> list[dict]:
        """One row per (round, model): accuracy and its 95% interval on ``split``."""
        rows = [{"round": 0, "model": "base", **_acc(self.base_eval[split])}]
        for r in self.rounds:
            rows += [{"round": r["round"], "model": name, **_acc(e[split])} for name, e in r["eval"].items()
                     if name != "previous"]
        return rows


def _acc(e: dict) -> dict:
    return {k: e[k] for k in ("acc", "low", "high", "n")}


def run_post_training(base_model, tokenizer, spec: PostTrainSpec = PostTrainSpec(), data: PostData | None = None,
                      embed: Callable = embed_texts, progress: bool = True) -> PostTrainResult:
    """Post-train ``base_model`` (left unchanged) for ``spec.rounds`` rounds; ``data`` defaults to
    ``build_post_data(spec.data)``. ``embed`` embeds texts for semantic dedup (default all-MiniLM-L6-v2)."""
    data = data or build_post_data(spec.data)
    base = copy.deepcopy(base_model).eval()
    base_eval = {split: evaluate_accuracy(base, tokenizer, getattr(data, split), spec.eval_max_tokens,
                                          target=spec.target)
                 for split in ("dev", "test")}
    sft_chats = list(data.sft_chats)
    policy, rounds = base, []
    for r in tqdm(range(1, spec.rounds + 1), desc="post-training rounds", disable=not progress):
        policy, metrics = post_train_round(base, policy, tokenizer, data, spec, r, sft_chats, embed)
        rounds.append(metrics)
    return PostTrainResult(policy, data, base_eval, rounds, sft_chats)
