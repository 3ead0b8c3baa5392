"""The book's base model: a small Llama trained on the curated corpus with the book tokenizer (report §3.4).

``base_model(mode)`` returns ``(model, tokenizer, metrics)``. The first call trains it (deterministically: seeded
init, a fixed document order, the CPU computes in fp32) and stores it through ``minillm.artifacts.build_or_load`` as
a Hugging Face folder (``minillm.load_pretrained`` reads it) with ``metrics.json`` and ``history.json``; later
calls — and later chapters (post-training, serving, quantization) — load it.

The data: the curated corpus of the run mode (``minillm.data.corpus.curated_corpus``), split by document into
train and held-out (``minillm.eval.split_documents``, 5%). Trained on the train split only; the held-out split gives

- the validation loss and bits per byte (``minillm.train.evaluate``), beside the *unigram* loss (the cross-entropy
  of a model that ignores context: train-split token frequencies), the bar a model that learned anything beats;
- the cloze multiple-choice benchmark (``minillm.eval.cloze``) and the arithmetic benchmarks (``minillm.eval.math``:
  4-option multiple choice and greedy answers checked by reasoning-gym, on a held-out seed).

``BaseModelSpec`` holds every size; ``base_model_spec(mode)`` picks it per run mode.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from minillm.config import ModelConfig
from minillm.device import RunMode
from minillm.eval.math import EASY_ARITHMETIC
from minillm.model import Llama
from minillm.train.evaluate import evaluate
from minillm.train.packing import PackedData, pack_texts
from minillm.train.schedules import BatchRamp, LRSchedule
from minillm.train.trainer import TrainConfig, Trainer, _jsonable

VERSION = 2  # 2: fast spec retuned (batch 8, 600 steps): 200 steps of 16 stayed at the unigram plateau


@dataclass(frozen=True)
class BaseModelSpec:
    """Model size, training length and evaluation sizes of a base-model run."""

    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 384
    seq_len: int = 128
    batch_size: int = 8                    # sequences per optimizer step
    steps: int = 600
    peak_lr: float = 5e-3
    warmup_steps: int = 20
    final_lr: float = 5e-4                 # the cosine floor; annealing (annealing.py) takes it on to 0
    held_out_fraction: float = 0.05
    eval_batches: int | None = 16          # validation batches of batch_size × seq_len tokens (None: all)
    n_cloze: int = 100
    n_math: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "seq_len", "batch_size", "steps",
                     "n_cloze", "n_math"):
            if getattr(self, name) < 1:
                raise ValueError(f"BaseModelSpec.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"BaseModelSpec.held_out_fraction must lie in (0, 1), got {self.held_out_fraction}")

    def model_config(self, vocab_size: int) -> ModelConfig:
        """A tied-embedding Llama (small models tie: the 8K × dim table is most of the weights). ``max_seq_len`` is
        4 × the training length, room for prompts + generation and for the long-context stage (RoPE has no
        learned positions, so this adds no weights)."""
        return ModelConfig.tiny(dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads,
                                n_kv_heads=self.n_kv_heads, ffn_dim=self.ffn_dim, vocab_size=vocab_size,
                                max_seq_len=4 * self.seq_len, tie_embeddings=True, name="minillm-base")

    def train_config(self, progress: bool = True) -> TrainConfig:
        """Warm-up, cosine to ``final_lr``, a constant batch (the report's ramp is shown in the chapter)."""
        schedule = LRSchedule(self.peak_lr, self.warmup_steps, self.steps, self.final_lr)
        return TrainConfig(steps=self.steps, schedule=schedule, batch=BatchRamp.constant(self.batch_size, self.seq_len),
                           micro_batch_size=self.batch_size, eval_batches=self.eval_batches,
                           eval_batch_size=self.batch_size, progress=progress)


def base_model_spec(mode: RunMode | str) -> BaseModelSpec:
    """Fast: 0.8M non-embedding weights (1M more in the tied 8K × 128 embedding), 600 steps × 1K tokens (~0.5 of
    an epoch of the fast corpus). Small batches, many steps: at a fixed token budget a model this small gains more
    from updates than from batch size (200 steps of 2K tokens stayed near the unigram loss; 600 steps of 1K reach
    0.8 nats below it). Book: 1.5x wider, sequences twice as long, 1.2M tokens in about 5 minutes on 2 cores
    (``make book`` has a 45-minute budget for the whole book; 1,500 steps of a 6-block, 256-wide model took 40).
    Full: the larger model the chapters quote."""
    mode = RunMode(mode) if isinstance(mode, str) else mode
    return mode.pick(fast=BaseModelSpec(),
                     book=BaseModelSpec(dim=192, n_layers=4, n_heads=6, ffn_dim=512, seq_len=256, batch_size=8,
                                        steps=600, peak_lr=3e-3, warmup_steps=30, final_lr=3e-4, eval_batches=None,
                                        n_cloze=200, n_math=200),
                     full=BaseModelSpec(dim=384, n_layers=8, n_heads=8, ffn_dim=1024, seq_len=256, batch_size=32,
                                        steps=3000, peak_lr=1.5e-3, warmup_steps=100, final_lr=1.5e-4,
                                        eval_batches=None, n_cloze=500, n_math=300))


# ---------------------------------------------------------------------------------------------- evaluation
def benchmark_suite(train_docs: list[dict], held_docs: list[dict], n_cloze: int, n_math: int, seed: int = 0) -> dict:
    """The held-out benchmarks: ``{"cloze": [ChoiceItem], "arith_mc": [ChoiceItem], "math": [MathItem]}``."""
    from minillm.eval import (arithmetic_choice_benchmark, cloze_benchmark, math_benchmark, training_questions,
                              word_counts)

    texts = [d["text"] for d in train_docs]
    math_items = math_benchmark(n_math, exclude=training_questions(texts), task_config=EASY_ARITHMETIC)
    return {"cloze": cloze_benchmark(held_docs, word_counts(texts), n_cloze, seed=seed),
            "arith_mc": arithmetic_choice_benchmark(math_items, seed=seed), "math": math_items}


def unigram_loss(train: PackedData, val: PackedData, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of val under train-split token frequencies (add-one smoothed): no context used."""
    counts = torch.bincount(train.tokens, minlength=vocab_size).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[val.tokens[1:]].mean())


def evaluate_base(model, tokenizer, val: PackedData, suite: dict, seq_len: int, batch_size: int = 16,
                  eval_batches: int | None = None, per_item: bool = False) -> dict:
    """Validation loss / bits per byte, cloze and arithmetic multiple choice, and the checked maths score.
    ``per_item``: also, for the multiple-choice sets, ``"correct"`` (one bool per item, for paired tests) and
    ``"answer_logprob"`` (the right option's log-probability among the options)."""
    from minillm.eval import score_choices, score_math

    out = {"val": evaluate(model, val, seq_len, batch_size, eval_batches)}
    for name in ("cloze", "arith_mc"):
        result = score_choices(model, tokenizer, suite[name])
        out[name] = {k: result[k] for k in ("acc", "acc_norm", "n", "chance")}
        if per_item:
            out[name]["correct"] = [p == item.answer for p, item in zip(result["predictions"], suite[name])]
            out[name]["answer_logprob"] = result["item_answer_logprob"]
    out["math"] = score_math(model, tokenizer, suite["math"])
    return out


# ---------------------------------------------------------------------------------------------- training
def split_corpus(docs: list[dict], spec: BaseModelSpec) -> tuple[list[dict], list[dict]]:
    from minillm.eval import split_documents

    return split_documents(docs, spec.held_out_fraction, spec.seed)


def train_base(spec: BaseModelSpec, tokenizer, docs: list[dict], progress: bool = True) -> tuple[Llama, dict, list]:
    """Train a base model on the train split of ``docs`` (corpus dicts: ``id``, ``text``); return
    ``(model, metrics, history)``. Works on any documents (the tests use a handful)."""
    train_docs, held_docs = split_corpus(docs, spec)
    if not held_docs:
        raise ValueError(f"no document fell in the held-out split ({spec.held_out_fraction:.0%} of {len(docs)}); "
                         f"pass more documents or raise held_out_fraction")
    train = pack_texts([d["text"] for d in train_docs], tokenizer, shuffle_seed=spec.seed)
    val = pack_texts([d["text"] for d in held_docs], tokenizer)
    torch.manual_seed(spec.seed)
    model = Llama(spec.model_config(tokenizer.vocab_size))
    trainer = Trainer(model, spec.train_config(progress), train)
    trainer.fit()
    suite = benchmark_suite(train_docs, held_docs, spec.n_cloze, spec.n_math, spec.seed)
    metrics = evaluate_base(model, tokenizer, val, suite, spec.seq_len, spec.batch_size, spec.eval_batches)
    metrics.update(unigram_loss=unigram_loss(train, val, tokenizer.vocab_size),
                   first_loss=trainer.history[0]["loss"], last_loss=trainer.history[-1]["loss"],
                   train_tokens=trainer.tokens_seen, train_docs=len(train_docs), held_out_docs=len(held_docs),
                   params=model.cfg.num_params(), spec=asdict(spec))
    return model, metrics, trainer.history


def tokenizer_key(tokenizer) -> str:
    """A short hash of the vocabulary, for recipes of artifacts built with it."""
    import hashlib

    return hashlib.sha256(tokenizer.hf.to_str().encode()).hexdigest()[:16]


def base_model_folder(mode: RunMode | str = "fast", root=None, progress: bool = True,
                      spec: BaseModelSpec | None = None) -> Path:
    """The artifact folder of the base model for ``mode`` (trained on first use): a Hugging Face checkpoint
    (``minillm.load_pretrained(folder)``) with ``metrics.json`` and ``history.json``."""
    from minillm.artifacts import build_or_load
    from minillm.data.corpus import curated_corpus, load_corpus
    from minillm.model.load import save_pretrained
    from minillm.tokenizer import book_tokenizer

    spec = spec or base_model_spec(mode)
    tokenizer = book_tokenizer(root=root)
    corpus = curated_corpus(mode, root=root, progress=progress)
    recipe = {"version": VERSION, "spec": asdict(spec), "corpus": corpus.name, "tokenizer": tokenizer_key(tokenizer),
              "torch": torch.__version__.split("+")[0]}

    def build(out: Path) -> None:
        model, metrics, history = train_base(spec, tokenizer, load_corpus(corpus), progress)
        save_pretrained(model, tokenizer, out)
        (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=1))
        (out / "history.json").write_text(json.dumps(_jsonable(history)))

    return build_or_load("base_model", recipe, build, root=root)


def base_model(mode: RunMode | str = "fast", root=None, progress: bool = True, spec: BaseModelSpec | None = None):
    """``(model, tokenizer, metrics)``: the book's base model for ``mode``, trained once and cached."""
    from minillm.model.load import load_pretrained
    from minillm.tokenizer import book_tokenizer

    folder = base_model_folder(mode, root, progress, spec)
    model, _ = load_pretrained(folder)
    return model, book_tokenizer(root=root), json.loads((folder / "metrics.json").read_text())
