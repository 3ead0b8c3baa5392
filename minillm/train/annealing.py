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
    general_share: float = 0.3             # fraction of annealing-mix documents drawn from general text
    checkpoint_every: int = 5
    average_last: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every", "average_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"AnnealSpec.{name} must be >= 1, got {getattr(self, name)}")
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


def annealing_mix(train_docs: list[dict], general_share: float, seed: int = 0) -> list[dict]:
    """The annealing documents (``doc["annealing"]``) and enough general ones (a seeded hash order) to make
    ``general_share`` of the mix. Raises if the train split holds no annealing document."""
    chosen = [d for d in train_docs if d.get("annealing")]
    if not chosen:
        raise ValueError("no train document has annealing=True: build the corpus with minillm.data (its pipeline "
                         "marks the annealing set) or set the flag on the maths/code documents to anneal on")
    others = sorted((d for d in train_docs if not d.get("annealing")),
                    key=lambda d: hashlib.sha256(f"{seed}:{d['id']}".encode()).digest())
    n_general = round(len(chosen) * general_share / (1 - general_share))
    return chosen + others[:n_general]


def anneal(model, tokenizer, train_docs: list[dict], spec: AnnealSpec, evaluate_fn=None,
           run_dir: str | Path | None = None, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Anneal a copy of ``model``; return ``(averaged model, metrics)`` with ``metrics["before"|"last"|"averaged"]``
    from ``evaluate_fn(model) -> dict`` (when given), the mix's size and the loss history."""
    docs = annealing_mix(train_docs, spec.general_share, spec.seed)
    data: PackedData = pack_texts([d["text"] for d in docs], tokenizer, shuffle_seed=spec.seed)
    metrics: dict = {"mix_docs": len(docs), "mix_tokens": len(data),
                     "annealing_docs": sum(bool(d.get("annealing")) for d in docs)}
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


def anneal_spec(mode, base) -> AnnealSpec:
    """Annealing for a run mode, continuing a ``BaseModelSpec`` ``base`` at its cosine floor and sequence length:
    a tenth of the base run's steps or less (fast: 30 steps, ~30K tokens; book: 60 steps, ~120K tokens), the
    report's 40M tokens scaled to our run."""
    from minillm.device import RunMode

    mode = RunMode(mode) if isinstance(mode, str) else mode
    steps = mode.pick(fast=30, book=60, full=600)
    every = max(1, steps // 6)
    return AnnealSpec(steps=steps, start_lr=base.final_lr, batch_size=base.batch_size, seq_len=base.seq_len,
                      checkpoint_every=every, average_last=3, seed=base.seed)


def annealed_model(mode="fast", root=None, progress: bool = True):
    """``(model, tokenizer, metrics)``: the base model of ``mode`` annealed and averaged, cached as an artifact whose
    ``metrics.json`` holds the held-out metrics before, after the last step and after averaging."""
    import json

    from minillm.artifacts import build_or_load
    from minillm.data.corpus import curated_corpus, load_corpus
    from minillm.model.load import load_pretrained, save_pretrained
    from minillm.tokenizer import book_tokenizer
    from minillm.train.pretrain import (_jsonable, base_model_folder, base_model_spec, benchmark_suite,
                                          evaluate_base, split_corpus)

    base = base_model_spec(mode)
    spec = anneal_spec(mode, base)
    folder = base_model_folder(mode, root, progress, base)
    tokenizer = book_tokenizer(root=root)
    recipe = {"version": 1, "base": folder.name, "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__}}

    def build(out: Path) -> None:
        model, _ = load_pretrained(folder)
        train_docs, held_docs = split_corpus(load_corpus(curated_corpus(mode, root=root, progress=progress)), base)
        val = pack_texts([d["text"] for d in held_docs], tokenizer)
        suite = benchmark_suite(train_docs, held_docs, base.n_cloze, base.n_math, base.seed)

        def evaluate_fn(m):
            return evaluate_base(m, tokenizer, val, suite, base.seq_len, base.batch_size, base.eval_batches)

        averaged, metrics = anneal(model, tokenizer, train_docs, spec, evaluate_fn, progress=progress)
        save_pretrained(averaged, tokenizer, out)
        (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=1))

    result = build_or_load("annealed_model", recipe, build, root=root)
    model, _ = load_pretrained(result)
    return model, tokenizer, json.loads((result / "metrics.json").read_text())
