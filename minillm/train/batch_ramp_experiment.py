"""The batch-size ramp of Llama 3 pre-training, measured against a constant batch (report §3.4.1).

The report: "We use an initial batch size of 4M tokens and sequences of length 4,096, and double these values to a
batch size of 8M sequences of 8,192 tokens after pre-training 252M tokens. We double the batch size again to 16M
after pre-training on 2.87T tokens. We found this training recipe to be very stable." ``ramp_experiment`` trains two
models of the same size from the same initial weights on the same token stream and the same token budget:

- **constant**: ``batch_size`` sequences of ``seq_len`` tokens at every step;
- **ramp**: the report's three stages scaled down (``scaled_ramp``): a quarter of the batch's tokens in sequences of
  half the length, then half the batch's tokens in full-length sequences, then the full batch. The report's first
  doubling comes after 60 of its ~1M steps, which would be no step at all here, so the doublings come at the
  fractions ``ramp_at`` of our budget (by default 1/16 and 3/16; the report's second is at 18% of 15.6T tokens).

Both read the packed stream from its start, so after ``t`` tokens both have seen exactly the same tokens, cut into
rows differently. Each run's learning rate is the same warm-up + cosine shape over its own steps (the report gives
its schedule in steps); the ramp run takes more, smaller steps. At the token counts ``eval_at`` (fractions of the
budget) both models score the same held-out documents: the first ``seq_len`` tokens of each, read on its own, one
mean loss per document, so ``paired_ramp_comparison`` can test ramp − constant per document (a paired t-test over
documents: it sees the evaluation's noise, not the noise of training, one run per arm).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minillm.train.evaluate import token_losses
from minillm.train.packing import IGNORE, PackedData, pack_texts
from minillm.train.schedules import BatchRamp, LRSchedule
from minillm.train.trainer import TrainConfig, Trainer

VERSION = 1
RUNS = ("constant", "ramp")


@dataclass(frozen=True)
class RampExperimentSpec:
    """Model size, batch, token budget and evaluation of the paired constant-vs-ramp runs. ``batch_size`` and
    ``seq_len`` are the constant run's batch and the ramp's last stage; ``tokens`` is each run's budget."""

    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 192
    seq_len: int = 128                                    # with batch_size: the fast base model's batch
    batch_size: int = 8
    tokens: int = 64 * 1024
    ramp_at: tuple[float, float] = (1 / 16, 3 / 16)      # the two doublings, as fractions of the budget
    eval_at: tuple[float, ...] = (1 / 16, 3 / 16, 1 / 2, 1.0)
    peak_lr: float = 5e-3                                 # the fast base model's rate, not tuned here
    warmup_fraction: float = 0.05                         # of each run's own steps
    final_lr: float = 5e-4
    eval_docs: int = 48                                   # the first held-out documents, seq_len tokens of each
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "seq_len", "batch_size", "eval_docs"):
            if getattr(self, name) < 1:
                raise ValueError(f"RampExperimentSpec.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seq_len", "batch_size"):
            if getattr(self, name) % 2:
                raise ValueError(f"RampExperimentSpec.{name} must be even (the ramp starts at half of it), got "
                                 f"{getattr(self, name)}; use {getattr(self, name) + 1}")
        unit = self.batch_size * self.seq_len
        if self.tokens < unit or self.tokens % unit:
            raise ValueError(f"RampExperimentSpec.tokens ({self.tokens}) must be a positive multiple of one full batch "
                             f"(batch_size × seq_len = {unit}); use {max(1, round(self.tokens / unit)) * unit}")
        a, b = self.ramp_at
        if not 0 < a < b < 1:
            raise ValueError(f"RampExperimentSpec.ramp_at must be two fractions 0 < a < b < 1 of the budget, got "
                             f"{self.ramp_at}")
        if not self.eval_at or list(self.eval_at) != sorted(set(self.eval_at)) or not 0 < self.eval_at[0] \
                or self.eval_at[-1] != 1.0:
            raise ValueError(f"RampExperimentSpec.eval_at must be increasing fractions in (0, 1] ending at 1.0 (the "
                             f"end of the budget), got {self.eval_at}")
        points = [self.tokens_at(f) for f in (*self.ramp_at, *self.eval_at)]
        if 0 in points or len(set(self.tokens_at(f) for f in self.eval_at)) < len(self.eval_at) \
                or self.tokens_at(a) >= self.tokens_at(b):
            raise ValueError(f"RampExperimentSpec.tokens ({self.tokens}) is too small to place ramp_at and eval_at on "
                             f"distinct whole batches of {unit} tokens; raise tokens or use coarser fractions")
        if not 0 < self.final_lr <= self.peak_lr:
            raise ValueError(f"RampExperimentSpec.final_lr ({self.final_lr}) must lie in (0, peak_lr={self.peak_lr}]")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"RampExperimentSpec.warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")

    def tokens_at(self, fraction: float) -> int:
        """``fraction`` of the budget, rounded to whole full batches (so that every run reaches it exactly)."""
        unit = self.batch_size * self.seq_len
        return round(self.tokens * fraction / unit) * unit

    def model_config(self, vocab_size: int):
        from minillm.train.pretrain import BaseModelSpec

        return BaseModelSpec(dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
                             ffn_dim=self.ffn_dim, seq_len=self.seq_len).model_config(vocab_size)


def scaled_ramp(spec: RampExperimentSpec) -> BatchRamp:
    """``BatchRamp.llama3()`` scaled so that its last stage is ``batch_size × seq_len`` (sequence lengths × seq_len /
    8,192, batch tokens × batch tokens / 16M), its doublings moved to ``spec.ramp_at`` of the budget. With
    ``batch_size=8, seq_len=128``: 4 × 64 → 4 × 128 → 8 × 128 sequences × tokens."""
    report = BatchRamp.llama3()
    last = report.stages[-1]
    shape = report.scaled(spec.batch_size * spec.seq_len / last.batch_tokens, spec.seq_len / last.seq_len)
    starts = (0, *(spec.tokens_at(f) for f in spec.ramp_at))
    return BatchRamp(tuple(replace(s, start_tokens=t) for s, t in zip(shape.stages, starts)))


def steps_for(ramp: BatchRamp, tokens: int) -> int:
    """Optimizer steps ``ramp`` takes to read ``tokens`` tokens (the trainer asks ``ramp.at`` before each step)."""
    steps, seen = 0, 0
    while seen < tokens:
        seen += ramp.at(seen).batch_tokens
        steps += 1
    return steps


def eval_rows(docs: list[dict], tokenizer, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens, targets)``, each ``(D, seq_len)``: row ``d`` is document ``d`` (BOS … EOS) cut to its first
    ``seq_len`` inputs; the targets are the next tokens, ``IGNORE`` past the document's end."""
    tokens = torch.full((len(docs), seq_len), tokenizer.eos_id, dtype=torch.long)
    targets = torch.full((len(docs), seq_len), IGNORE, dtype=torch.long)
    for d, doc in enumerate(docs):
        ids = torch.tensor([tokenizer.bos_id, *tokenizer.encode(doc["text"]), tokenizer.eos_id][:seq_len + 1])
        tokens[d, :len(ids) - 1] = ids[:-1]
        targets[d, :len(ids) - 1] = ids[1:]
    return tokens, targets


@torch.no_grad()
def document_losses(model, tokens: torch.Tensor, targets: torch.Tensor, rows: int = 32) -> list[float]:
    """Mean next-token loss (nats) of each row of ``tokens``/``targets`` ``(D, T)``: one number per document."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(tokens), rows):
        tok, tgt = tokens[start:start + rows], targets[start:start + rows]
        losses = token_losses(model, tok, tgt, None)                         # (rows, T); causal: padding is after
        out += (losses.sum(1) / (tgt != IGNORE).sum(1)).tolist()
    model.train(was_training)
    return out


def ramp_experiment(spec: RampExperimentSpec, tokenizer, train_docs: list[dict], held_docs: list[dict],
                    progress: bool = True) -> dict:
    """Train the constant and the ramp run (same initial weights, same stream, ``spec.tokens`` each) and score both
    on the held-out documents at every ``spec.eval_at``. Returns ``{"spec", "ramp": [[start_tokens, batch_tokens,
    seq_len], ...], "eval_tokens": [...], "eval_docs": [ids], "runs": {"constant" | "ramp": {"history": [{step,
    tokens_seen, loss, lr, grad_norm, batch_size, seq_len}], "evals": [{tokens, step, loss, doc_losses}]}}}``;
    ``loss`` of an eval is the token-weighted mean over the documents."""
    from minillm.model import Llama

    train = pack_texts([d["text"] for d in train_docs], tokenizer, shuffle_seed=spec.seed, with_bytes=False)
    if len(train) < spec.tokens + 1:
        raise ValueError(f"the training stream holds {len(train):,} tokens, fewer than the budget of {spec.tokens:,} "
                         f"(+1): both runs must read the same tokens once; lower RampExperimentSpec.tokens")
    docs = held_docs[:spec.eval_docs]
    tokens, targets = eval_rows(docs, tokenizer, spec.seq_len)
    counts = (targets != IGNORE).sum(1)                                       # (D,)
    ramps = {"constant": BatchRamp.constant(spec.batch_size, spec.seq_len), "ramp": scaled_ramp(spec)}
    steps = {name: steps_for(r, spec.tokens) for name, r in ramps.items()}
    eval_tokens = [spec.tokens_at(f) for f in spec.eval_at]
    torch.manual_seed(spec.seed)
    init = Llama(spec.model_config(tokenizer.vocab_size)).state_dict()
    bar = tqdm(total=sum(steps.values()), desc="constant and ramp runs", disable=not progress)
    runs = {}
    for name, ramp in ramps.items():
        model = Llama(spec.model_config(tokenizer.vocab_size))
        model.load_state_dict(init)
        n = steps[name]
        schedule = LRSchedule(spec.peak_lr, max(1, round(spec.warmup_fraction * n)), n, spec.final_lr)
        cfg = TrainConfig(steps=n, schedule=schedule, batch=ramp, micro_batch_size=spec.batch_size, progress=False)
        trainer = Trainer(model, cfg, train)
        evals = []
        for point in eval_tokens:
            while trainer.tokens_seen < point:
                trainer.train_step()
                bar.update(1)
            if trainer.tokens_seen != point:                                  # stages divide the full batch
                raise RuntimeError(f"{name} run passed {point} tokens at {trainer.tokens_seen}")
            losses = document_losses(model, tokens, targets)
            mean = float((torch.tensor(losses, dtype=torch.float64) * counts).sum() / counts.sum())
            evals.append({"tokens": point, "step": trainer.step, "loss": mean, "doc_losses": losses})
        keep = ("step", "tokens_seen", "loss", "lr", "grad_norm", "batch_size", "seq_len")
        runs[name] = {"history": [{k: row[k] for k in keep} for row in trainer.history], "evals": evals,
                      "stream_position": trainer.loader.position}
    bar.close()
    return {"spec": asdict(spec), "ramp": [[s.start_tokens, s.batch_tokens, s.seq_len] for s in ramps["ramp"].stages],
            "eval_tokens": eval_tokens, "eval_docs": [d["id"] for d in docs],
            "eval_doc_tokens": counts.tolist(), "runs": runs}


def paired_ramp_comparison(result: dict) -> list[dict]:
    """At each evaluation point: ``tokens``, both runs' steps and losses, and ``minillm.eval.stats.paired_difference``
    of ramp − constant per held-out document (``diff``, ``half``, ``p``, ``n``; negative: the ramp is ahead) with
    ``ramp_better``, the share of documents on which the ramp's loss is lower."""
    from minillm.eval.stats import paired_difference

    rows = []
    for const, ramp in zip(result["runs"]["constant"]["evals"], result["runs"]["ramp"]["evals"]):
        test = paired_difference(ramp["doc_losses"], const["doc_losses"])
        better = sum(r < c for r, c in zip(ramp["doc_losses"], const["doc_losses"])) / len(const["doc_losses"])
        rows.append({"tokens": const["tokens"], "constant_steps": const["step"], "ramp_steps": ramp["step"],
                     "constant_loss": const["loss"], "ramp_loss": ramp["loss"], "ramp_better": better, **test})
    return rows


def ramp_experiment_spec(mode) -> RampExperimentSpec:
    """Per run mode, sized for 2 CPU cores; every mode uses the fast base model's batch (8 × 128) and learning
    rates. Fast: a 64-wide, 2-block model, 64K tokens per run (64 constant steps), 48 held-out documents. Book: the
    fast base model's shape (128 wide, 4 blocks), 160K tokens per run (160 constant steps, 210 ramp steps), 128
    documents, six evaluation points; about 100 s on one thread. Full: 4x the tokens, up to 400 documents."""
    from minillm.device import RunMode

    mode = RunMode(mode) if isinstance(mode, str) else mode
    points = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    book = RampExperimentSpec(dim=128, n_layers=4, ffn_dim=384, tokens=160 * 1024, eval_docs=128, eval_at=points)
    return mode.pick(fast=RampExperimentSpec(), book=book,
                     full=replace(book, tokens=640 * 1024, eval_docs=400))


def batch_ramp_runs(mode="fast", root=None, progress: bool = True) -> dict:
    """``ramp_experiment`` on the book's corpus and tokenizer for ``mode`` (the base model's train/held-out split and
    stream order), cached through ``minillm.artifacts.build_or_load`` as ``result.json``."""
    from minillm.artifacts import build_or_load
    from minillm.data.corpus import curated_corpus, load_corpus
    from minillm.tokenizer import book_tokenizer
    from minillm.train.pretrain import base_model_spec, split_corpus, tokenizer_key

    spec = ramp_experiment_spec(mode)
    tokenizer = book_tokenizer(root=root)
    corpus = curated_corpus(mode, root=root, progress=progress)
    recipe = {"version": VERSION, "spec": asdict(spec), "corpus": corpus.name, "tokenizer": tokenizer_key(tokenizer),
              "torch": torch.__version__.split("+")[0]}

    def build(out: Path) -> None:
        train_docs, held_docs = split_corpus(load_corpus(corpus), base_model_spec(mode))
        threads = torch.get_num_threads()
        # as in the shape sweep: models this small gain nothing from a second CPU thread, and on 2 shared cores a
        # second thread made these runs 2-3x slower (measured); the result does not depend on it
        torch.set_num_threads(1)
        try:
            result = ramp_experiment(spec, tokenizer, train_docs, held_docs, progress)
        finally:
            torch.set_num_threads(threads)
        (out / "result.json").write_text(json.dumps(result))

    return json.loads((build_or_load("batch_ramp", recipe, build, root=root) / "result.json").read_text())
