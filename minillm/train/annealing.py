"""Annealing: the end of pre-training on a high-quality maths and code mix, learning rate to 0, checkpoints averaged
(report §3.4.3 and §3.1.3).

The report: "During pre-training on the final 40M tokens, we linearly annealed the learning rate to 0, maintaining a
context length of 128K tokens. During this annealing phase, we also adjusted the data mix to upsample data sources
of very high quality. Finally, we compute the average of model checkpoints (Polyak (1991) averaging) during annealing
to produce the final pre-trained model." Annealing on maths and code raised the 8B model's GSM8k score by 24.0%.

``anneal(model, ...)`` continues a trained base model (``pretrain.py``) with

- data: the corpus's annealing set (``annealing`` flag: ``minillm.data.annealing.select_annealing`` picked the best
  maths and code pages) plus ``general_share`` of general train-split documents, so the model does not forget
  everything else;
- LR: constant ``start_lr`` (the base run's cosine floor), falling linearly to 0 over the run
  (``LRSchedule.with_annealing`` from step 0);
- checkpoints every ``checkpoint_every`` steps; the last ``average_last`` are averaged (``average_checkpoints``).

It returns the averaged model and the metrics (held-out loss, bits per byte, multiple choice, maths) before
annealing, after its last step and of the average.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_model

from minillm.train.checkpoint import average_checkpoints, list_checkpoints
from minillm.train.packing import PackedData, pack_texts
from minillm.train.schedules import BatchRamp, LRSchedule
from minillm.train.trainer import TrainConfig, Trainer


@dataclass(frozen=True)
class AnnealSpec:
    """The annealing run: ``steps`` of ``batch_size × seq_len`` tokens, LR from ``start_lr`` linearly to 0."""

    steps: int = 30
    start_lr: float = 3e-4
    batch_size: int = 16
    seq_len: int = 128
    general_share: float = 0.3             # share of the annealing mix's tokens drawn from general text
    drills: int = 0                        # arithmetic-drill documents annealed_model adds to the high-quality set
    checkpoint_every: int = 5
    average_last: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every", "average_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"AnnealSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.drills < 0:
            raise ValueError(f"AnnealSpec.drills must be >= 0, got {self.drills}")
        if not self.start_lr > 0:
            raise ValueError(f"AnnealSpec.start_lr must be positive, got {self.start_lr}")
        if not 0 <= self.general_share < 1:
            raise ValueError(f"AnnealSpec.general_share must lie in [0, 1), got {self.general_share}")
        if self.average_last * self.checkpoint_every > self.steps:
            raise ValueError(f"AnnealSpec.average_last={self.average_last} checkpoints every {self.checkpoint_every} "
                             f"steps need steps >= {self.average_last * self.checkpoint_every}, got {self.steps}; "
                             f"lower average_last or checkpoint_every")

    def train_config(self, progress: bool = True) -> TrainConfig:
        schedule = LRSchedule(self.start_lr, 0, self.steps, self.start_lr).with_annealing(0, self.steps)
        return TrainConfig(steps=self.steps, schedule=schedule, batch=BatchRamp.constant(self.batch_size, self.seq_len),
                           micro_batch_size=self.batch_size, checkpoint_every=self.checkpoint_every,
                           progress=progress)


def mix_by_tokens(chosen: list[dict], others: list[dict], share: float, tokenizer, seed: int = 0) -> list[dict]:
    """``chosen`` plus ``others`` (in a seeded hash order) until ``chosen`` holds ``share`` of the mix's tokens (the
    report gives mix weights in tokens). ``share = 1``: ``chosen`` alone; ``share = 0``: ``others`` alone."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    order = sorted(others, key=lambda d: hashlib.sha256(f"{seed}:{d['id']}".encode()).digest())
    if share == 0:
        return order
    want = sum(len(tokenizer.encode(d["text"])) for d in chosen) * (1 - share) / share
    mix, have = list(chosen), 0
    for d in order:
        if have >= want:
            break
        mix.append(d)
        have += len(tokenizer.encode(d["text"]))
    return mix


def annealing_mix(train_docs: list[dict], general_share: float, tokenizer, seed: int = 0,
                  high_quality: list[dict] | None = None) -> list[dict]:
    """The high-quality documents (default: the train split's ``doc["annealing"]`` ones) and enough general train
    documents to make ``general_share`` of the mix's tokens. Raises if there is no high-quality document."""
    chosen = list(high_quality) if high_quality is not None else [d for d in train_docs if d.get("annealing")]
    if not chosen:
        raise ValueError("no high-quality document to anneal on: build the corpus with minillm.data (its pipeline "
                         "marks the annealing set with annealing=True) or pass high_quality=[...]")
    general = [d for d in train_docs if not d.get("annealing")]
    return mix_by_tokens(chosen, general, 1 - general_share, tokenizer, seed)


def anneal(model, tokenizer, train_docs: list[dict], spec: AnnealSpec, evaluate_fn=None,
           run_dir: str | Path | None = None, progress: bool = True,
           high_quality: list[dict] | None = None) -> tuple[torch.nn.Module, dict]:
    """Anneal a copy of ``model`` on ``annealing_mix`` (``high_quality`` documents, default the corpus's annealing
    set, plus general text); return ``(averaged model, metrics)`` with ``metrics["before"|"last"|"averaged"]`` from
    ``evaluate_fn(model) -> dict`` (when given), the mix's size and the loss history."""
    docs = annealing_mix(train_docs, spec.general_share, tokenizer, spec.seed, high_quality)
    data: PackedData = pack_texts([d["text"] for d in docs], tokenizer, shuffle_seed=spec.seed)
    metrics: dict = {"mix_docs": len(docs), "mix_tokens": len(data),
                     "annealing_docs": len(high_quality) if high_quality is not None
                     else sum(bool(d.get("annealing")) for d in docs)}
    if evaluate_fn is not None:
        metrics["before"] = evaluate_fn(model)
    student = copy.deepcopy(model)
    with tempfile.TemporaryDirectory(prefix="anneal-") as tmp:
        run = Path(run_dir) if run_dir is not None else Path(tmp)
        trainer = Trainer(student, spec.train_config(progress), data, run_dir=run)
        trainer.fit()
        metrics["history"] = [{k: row[k] for k in ("step", "loss", "lr")} for row in trainer.history]
        if evaluate_fn is not None:
            metrics["last"] = evaluate_fn(student)
        paths = list_checkpoints(run)[-spec.average_last:]
        averaged = copy.deepcopy(model)
        average_checkpoints(paths, out=run / "averaged.safetensors")
        load_model(averaged, str(run / "averaged.safetensors"))
    metrics["averaged_steps"] = [int(p.name.split("_")[1]) for p in paths]
    if evaluate_fn is not None:
        metrics["averaged"] = evaluate_fn(averaged)
    return averaged, metrics



def annealing_probe(model, tokenizer, general_docs: list[dict], candidates: dict[str, list[dict]], spec: AnnealSpec,
                    score_fn, share: float = 0.3, progress: bool = True) -> dict:
    """Judge datasets by annealing on them (report §3.1.3: "we anneal the learning rate of a 50% trained Llama 3 8B
    model linearly to 0 on 40B tokens. In those experiments, we assign 30% weight to the new dataset and the
    remaining 70% weight to the default data mix").

    For each candidate (name -> documents) a copy of ``model`` anneals for ``spec.steps`` steps (LR from
    ``spec.start_lr`` to 0) on a mix holding ``share`` of its tokens from the candidate and the rest from
    ``general_docs``; a **control** anneals the same way on ``general_docs`` alone, so that what the schedule itself
    does cancels in ``candidate − control``. ``score_fn(model) -> (n_items,) array`` scores each result on the same
    items. Returns ``{"scores": {"before" | "control" | name: array}, "mix_tokens": {...}}``."""
    import numpy as np

    if "control" in candidates or "before" in candidates:
        raise ValueError("candidate names 'control' and 'before' are taken by the probe's own runs; rename them")
    scores = {"before": np.asarray(score_fn(model))}
    mix_tokens = {}
    runs = {"control": []} | dict(candidates)
    for name, docs in runs.items():
        mix = mix_by_tokens(docs, general_docs, share if docs else 0.0, tokenizer, spec.seed)
        data = pack_texts([d["text"] for d in mix], tokenizer, shuffle_seed=spec.seed)
        mix_tokens[name] = len(data)
        student = copy.deepcopy(model)
        config = dataclasses.replace(spec.train_config(progress), checkpoint_every=0)   # the probe keeps none
        Trainer(student, config, data).fit()
        scores[name] = np.asarray(score_fn(student))
    return {"scores": scores, "mix_tokens": mix_tokens}


def anneal_spec(mode, base) -> AnnealSpec:
    """Annealing for a run mode, continuing a ``BaseModelSpec`` ``base`` at its cosine floor and sequence length
    (fast: 30 steps, ~30K tokens; book: 120 steps, ~250K tokens: a fifth of the base run, a far larger share than the
    report's last 40M of 15.6T tokens, because our whole run is 1.2M tokens). The
    high-quality set is the corpus's maths and code pages plus ``drills`` documents of verified arithmetic."""
    from minillm.device import RunMode

    mode = RunMode(mode) if isinstance(mode, str) else mode
    steps = mode.pick(fast=30, book=120, full=600)
    return AnnealSpec(steps=steps, start_lr=base.final_lr, batch_size=base.batch_size, seq_len=base.seq_len,
                      checkpoint_every=max(1, steps // 6), average_last=3, seed=base.seed,
                      drills=mode.pick(fast=100, book=400, full=2000))


def _annealing_inputs(mode, root, progress):
    """What both cached runs below start from: the base spec and model folder, the tokenizer, the train/held-out
    split and the benchmark suite, whose arithmetic set is larger than the base model's (800 items in book mode: a
    few points of accuracy must be told from noise)."""
    from minillm.data.corpus import curated_corpus, load_corpus
    from minillm.device import RunMode
    from minillm.tokenizer import book_tokenizer
    from minillm.train.pretrain import base_model_folder, base_model_spec, benchmark_suite, split_corpus

    mode = RunMode(mode) if isinstance(mode, str) else mode
    base = base_model_spec(mode)
    folder = base_model_folder(mode, root, progress, base)
    tokenizer = book_tokenizer(root=root)

    def data():
        train_docs, held_docs = split_corpus(load_corpus(curated_corpus(mode, root=root, progress=progress)), base)
        n_items = mode.pick(fast=200, book=800, full=800)
        return train_docs, held_docs, benchmark_suite(train_docs, held_docs, base.n_cloze, n_items, base.seed)

    return mode, base, folder, tokenizer, data


def annealed_model(mode="fast", root=None, progress: bool = True):
    """``(model, tokenizer, metrics)``: the base model of ``mode`` annealed and averaged, cached as an artifact whose
    ``metrics.json`` holds the held-out metrics (per item on the multiple-choice sets) before, after the last step
    and after averaging."""
    import json

    from minillm.artifacts import build_or_load
    from minillm.data.annealing import arithmetic_drills
    from minillm.model.load import load_pretrained, save_pretrained
    from minillm.train.pretrain import _jsonable, evaluate_base

    mode, base, folder, tokenizer, data = _annealing_inputs(mode, root, progress)
    spec = anneal_spec(mode, base)
    recipe = {"version": 3, "base": folder.name, "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__}}

    def build(out: Path) -> None:
        model, _ = load_pretrained(folder)
        train_docs, held_docs, suite = data()
        val = pack_texts([d["text"] for d in held_docs], tokenizer)
        drills = arithmetic_drills(spec.drills, exclude={item.question for item in suite["math"]})
        high_quality = drills + [d for d in train_docs if d.get("annealing")]

        def evaluate_fn(m):
            return evaluate_base(m, tokenizer, val, suite, base.seq_len, base.batch_size, base.eval_batches,
                                 per_item=True)

        averaged, metrics = anneal(model, tokenizer, train_docs, spec, evaluate_fn, progress=progress,
                                   high_quality=high_quality)
        metrics["high_quality"] = {"drill_docs": len(drills), "corpus_docs": len(high_quality) - len(drills),
                                   "drill_example": drills[0]["text"]}
        save_pretrained(averaged, tokenizer, out)
        (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=1))

    result = build_or_load("annealed_model", recipe, build, root=root)
    model, _ = load_pretrained(result)
    return model, tokenizer, json.loads((result / "metrics.json").read_text())


PROBE_CANDIDATES = {"100% right": 0.0, "50% right": 0.5, "0% right": 1.0}   # name -> share of answers made wrong


def probed_datasets(mode="fast", root=None, progress: bool = True) -> dict:
    """The annealing probe (``annealing_probe``, report §3.1.3) run on the book's base model and cached: one source of
    arithmetic drills in three planted qualities (``PROBE_CANDIDATES``: every question answered right, half of the
    questions answered wrongly, all of them; see ``arithmetic_drills``), each annealed in at 30% of the tokens for half the annealing run's steps, and a
    control on general text alone. Scores: per arithmetic multiple-choice item, the right option's log-probability
    among the options. Returns ``{"scores": {run: [..]}, "mix_tokens", "steps", "docs"}``."""
    import json

    from minillm.artifacts import build_or_load
    from minillm.data.annealing import arithmetic_drills
    from minillm.eval import score_choices
    from minillm.model.load import load_pretrained

    mode, base, folder, tokenizer, data = _annealing_inputs(mode, root, progress)
    spec = anneal_spec(mode, base)
    spec = dataclasses.replace(spec, steps=spec.steps // 2, checkpoint_every=spec.steps // 2, average_last=1)
    n_docs = mode.pick(fast=50, book=200, full=1000)
    recipe = {"version": 1, "base": folder.name, "steps": spec.steps, "docs": n_docs, "share": 0.3,
              "candidates": PROBE_CANDIDATES}

    def build(out: Path) -> None:
        model, _ = load_pretrained(folder)
        train_docs, _, suite = data()
        exclude = {item.question for item in suite["math"]}
        candidates = {name: arithmetic_drills(n_docs, seed=21, exclude=exclude, wrong_share=wrong)
                      for name, wrong in PROBE_CANDIDATES.items()}
        general = [d for d in train_docs if not d.get("annealing")]
        probe = annealing_probe(model, tokenizer, general, candidates, spec,
                                lambda m: score_choices(m, tokenizer, suite["arith_mc"])["item_answer_logprob"],
                                progress=progress)
        result = {"scores": {k: [float(x) for x in v] for k, v in probe["scores"].items()},
                  "mix_tokens": probe["mix_tokens"], "steps": spec.steps, "docs": n_docs}
        (out / "probe.json").write_text(json.dumps(result, indent=1))

    return json.loads((build_or_load("annealing_probe", recipe, build, root=root) / "probe.json").read_text())
