"""The IsoFLOP sweep: at each compute budget, train several model sizes on ``D = C / flops_per_token`` tokens with the
book's ``Trainer`` (report §3.2.1). Results are cached through ``minillm.artifacts.build_or_load``.

The report trained models "ranging in size between 40M and 16B parameters" at budgets from 6·10¹⁸ to 10²² FLOPs,
with a cosine schedule, "a fixed batch size for each compute scale", and evaluated each on held-out data. Ours do
the same at 10¹⁰ to 10¹² FLOPs, 10⁴ to 10⁵ weights, on the curated corpus:

- the **size ladder** is one knob, the width ``d`` (depth ``max(1, d // 32)``, heads of 16 dimensions, half as many
  KV heads, SwiGLU of ``8d/3``); each budget names the widths it trains, around where its optimum is expected;
- the **batch** grows with the budget (256 tokens at 10¹⁰ FLOPs, doubling per ~3× compute): every run then takes
  hundreds to a few thousand optimizer steps. With one batch for all budgets, the small budgets' larger models
  got too few steps to converge and every IsoFLOP minimum sat at the smallest width (the loss was step-limited,
  not size- or data-limited);
- the **tokenizer** is the book's BPE recipe (``book_tokenizer``) at a smaller vocabulary (1,024 by default). The
  tied embedding is most of the weights at this scale whatever the vocabulary, but with 8,192 rows the smallest
  model would be 8× larger and every token would pay for an 8,192-way softmax, putting the sizes where affordable
  budgets have their optimum out of reach. (Kaplan et al., 2020, leave embeddings out of ``N``; we keep them in,
  since the tied table is also the output matmul);
- each run records its validation loss and bits per byte (``evaluate``) and the held-out cloze benchmark
  (``score_choices``: accuracy and the normalized NLL of the correct answer, the input of ``forecast.py``), and
  keeps its weights, so the chapter can evaluate the best models further.

``isoflop_sweep(mode)`` returns the list of run dicts; ``load_sweep_model(run, folder)`` rebuilds a run's model.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from minillm.config import ModelConfig
from minillm.device import RunMode
from minillm.model import Llama
from minillm.train.evaluate import evaluate
from minillm.train.packing import pack_texts
from minillm.train.scaling import six_nd, tokens_for_budget
from minillm.train.schedules import BatchRamp, LRSchedule
from minillm.train.trainer import TrainConfig, Trainer

VERSION = 3  # 2: run ids name the budget with 2 significant digits; 3: a batch per budget


@dataclass(frozen=True)
class SweepSpec:
    """Budgets (FLOPs) with the widths trained at each, and what every run shares."""

    grid: tuple[tuple[float, tuple[int, ...]], ...]
    vocab_size: int = 1024
    seq_len: int = 64
    batch_size: int = 8                    # sequences per step at every budget, unless batch_sizes is given
    batch_sizes: tuple[int, ...] | None = None   # sequences per step at each budget of grid (the report: one per scale)
    peak_lr: float = 5e-3
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 0.1         # cosine to 10% of the peak, as the report's scaling runs
    min_steps: int = 20
    n_cloze: int = 200
    eval_batches: int | None = 32          # validation batches of 32 × seq_len tokens (None: all)
    held_out_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.grid) < 2:
            raise ValueError(f"SweepSpec.grid needs >= 2 budgets to fit a law, got {len(self.grid)}")
        for budget, widths in self.grid:
            if budget <= 0 or len(set(widths)) < 3:
                raise ValueError(f"SweepSpec.grid: budget {budget} needs a positive value and >= 3 distinct widths "
                                 f"for its parabola, got {widths}")
            if any(w < 2 or w % 2 for w in widths):
                raise ValueError(f"SweepSpec.grid: widths must be even and >= 2 (RoPE rotates pairs), got {widths}")
        if self.batch_sizes is not None and (len(self.batch_sizes) != len(self.grid) or min(self.batch_sizes) < 1):
            raise ValueError(f"SweepSpec.batch_sizes needs one batch >= 1 per budget of grid ({len(self.grid)}), "
                             f"got {self.batch_sizes}")
        if self.batch_size < 1:
            raise ValueError(f"SweepSpec.batch_size must be >= 1, got {self.batch_size}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"SweepSpec.held_out_fraction must lie in (0, 1), got {self.held_out_fraction}")

    @property
    def budgets(self) -> list[float]:
        return [b for b, _ in self.grid]

    def batch_for(self, budget: float) -> int:
        """Sequences per optimizer step for the runs at ``budget``."""
        if self.batch_sizes is None:
            return self.batch_size
        for (b, _), size in zip(self.grid, self.batch_sizes):
            if b == budget:
                return size
        raise ValueError(f"budget {budget:.3g} is not in SweepSpec.grid {self.budgets}")

    def schedule(self, steps: int) -> LRSchedule:
        warmup = max(1, round(self.warmup_fraction * steps))
        return LRSchedule(self.peak_lr, warmup, steps, self.peak_lr * self.final_lr_fraction)


def ladder_config(width: int, vocab_size: int, seq_len: int) -> ModelConfig:
    """The sweep's model of width ``width``: depth ``max(1, width // 32)``, heads of 16 dims (one head below 32),
    half as many KV heads, SwiGLU hidden ``8·width/3`` rounded down to a multiple of 16 (at least 16), tied
    embeddings. ``max_seq_len`` is 4 × ``seq_len`` (room for longer prompts at evaluation; RoPE adds no weights)."""
    n_heads = max(1, width // 16)
    return ModelConfig.tiny(dim=width, n_layers=max(1, width // 32), n_heads=n_heads,
                            n_kv_heads=max(1, n_heads // 2), ffn_dim=max(16, (8 * width // 3) // 16 * 16),
                            vocab_size=vocab_size, max_seq_len=4 * seq_len, tie_embeddings=True,
                            name=f"sweep-d{width}")


def sweep_spec(mode: RunMode | str) -> SweepSpec:
    """Fast: 3 budgets × 4 widths over one decade, 10¹⁰ to 10¹¹ FLOPs, batches of 4, 8 and 16 sequences (~12K
    steps in all, a few minutes on 2 cores). Book: 5 widths per budget and a fourth budget, 3·10¹¹. Full: a fifth,
    10¹². The widths of each budget bracket its optimum (trial runs put it near 8K weights at 10¹⁰
    FLOPs and near 14K at 10¹¹)."""
    mode = RunMode(mode) if isinstance(mode, str) else mode
    book = ((1e10, (4, 6, 8, 12, 16)), (3e10, (4, 6, 8, 12, 16)), (1e11, (6, 8, 12, 16, 24)),
            (3e11, (8, 12, 16, 24, 32)))
    return mode.pick(
        fast=SweepSpec(grid=((1e10, (4, 6, 8, 12)), (3e10, (4, 6, 8, 12)), (1e11, (8, 12, 16, 24))),
                       batch_sizes=(4, 8, 16)),
        book=SweepSpec(grid=book, batch_sizes=(4, 8, 16, 32), n_cloze=300),
        full=SweepSpec(grid=(*book, (1e12, (12, 16, 24, 32, 48))), batch_sizes=(4, 8, 16, 32, 64), n_cloze=300,
                       eval_batches=None))


def train_model(cfg: ModelConfig, steps: int, batch: int, spec: SweepSpec, train, seed: int | None = None,
                progress: bool = False) -> tuple[Llama, Trainer, float]:
    """The sweep's recipe for any model: ``Llama(cfg)`` seeded with ``seed`` (default ``spec.seed``), ``steps`` AdamW
    steps of ``batch`` sequences of ``train``, warm-up + cosine to ``spec.final_lr_fraction`` of ``spec.peak_lr``.
    Returns ``(model, trainer, seconds)``."""
    torch.manual_seed(spec.seed if seed is None else seed)
    model = Llama(cfg)
    tcfg = TrainConfig(steps=steps, schedule=spec.schedule(steps), batch=BatchRamp.constant(batch, spec.seq_len),
                       micro_batch_size=batch, progress=progress)
    start = time.perf_counter()
    trainer = Trainer(model, tcfg, train)
    trainer.fit()
    return model, trainer, time.perf_counter() - start


def train_run(width: int, budget: float, spec: SweepSpec, train, val, items, tokenizer,
              progress: bool = False) -> tuple[dict, dict]:
    """Train the width-``width`` model on ``budget`` FLOPs of ``train`` (a ``PackedData``); evaluate on ``val`` and
    the cloze ``items``. Returns ``(row, state_dict)``."""
    from minillm.eval import score_choices

    cfg = ladder_config(width, spec.vocab_size, spec.seq_len)
    batch = spec.batch_for(budget)
    tokens_per_step = batch * spec.seq_len
    steps = max(spec.min_steps, round(tokens_for_budget(cfg, budget, spec.seq_len) / tokens_per_step))
    model, trainer, seconds = train_model(cfg, steps, batch, spec, train, progress=progress)
    val_metrics = evaluate(model, val, spec.seq_len, 32, spec.eval_batches)
    bench = score_choices(model, tokenizer, items)
    tokens = trainer.tokens_seen
    row = dict(budget=budget, width=width, n_layers=cfg.n_layers, params=cfg.num_params(include_embedding=False),
               params_total=cfg.num_params(), tokens=tokens, steps=steps, batch=batch,
               compute=cfg.flops_per_token(spec.seq_len) * tokens, compute_6nd=six_nd(cfg, tokens),
               loss=val_metrics["loss"], bpb=val_metrics["bpb"], acc=bench["acc"], acc_norm=bench["acc_norm"],
               nll_per_byte=bench["nll_per_byte"], n_items=bench["n"], first_loss=trainer.history[0]["loss"],
               last_train_loss=trainer.history[-1]["loss"], seconds=seconds, id=f"C{budget:.2g}-d{width}")
    return row, model.state_dict()


def sweep_data(spec: SweepSpec, root=None, progress: bool = True) -> dict:
    """Tokenizer, corpus split, packed train/val streams and the cloze items of a sweep (the fast corpus for every
    mode: the sweep is small and must stay within about one epoch of it)."""
    from minillm.data.corpus import curated_corpus, load_corpus
    from minillm.eval import cloze_benchmark, split_documents, word_counts
    from minillm.tokenizer import book_tokenizer

    tokenizer = book_tokenizer(vocab_size=spec.vocab_size, root=root)
    corpus = curated_corpus("fast", root=root, progress=progress)
    train_docs, held_docs = split_documents(load_corpus(corpus), spec.held_out_fraction, spec.seed)
    train_texts = [d["text"] for d in train_docs]
    return dict(tokenizer=tokenizer, corpus=corpus, train_docs=train_docs, held_docs=held_docs,
                train=pack_texts(train_texts, tokenizer, shuffle_seed=spec.seed),
                val=pack_texts([d["text"] for d in held_docs], tokenizer),
                items=cloze_benchmark(held_docs, word_counts(train_texts), spec.n_cloze, seed=spec.seed))


def isoflop_folder(mode: RunMode | str = "fast", root=None, progress: bool = True, spec: SweepSpec | None = None,
                   data: dict | None = None) -> Path:
    """The artifact folder: ``runs.json`` (one dict per run) and ``models/<id>.pt`` (state dicts). ``data``: the
    ``sweep_data(spec)`` already at hand (it is rebuilt otherwise)."""
    from minillm.artifacts import build_or_load
    from minillm.train.pretrain import tokenizer_key
    from tqdm.auto import tqdm

    from minillm.data.corpus import curated_corpus
    from minillm.tokenizer import book_tokenizer

    spec = spec or sweep_spec(mode)
    # the recipe needs only the tokenizer and the corpus key; the packed data is made when a build needs it
    tokenizer = data["tokenizer"] if data else book_tokenizer(vocab_size=spec.vocab_size, root=root)
    corpus = data["corpus"] if data else curated_corpus("fast", root=root, progress=progress)
    recipe = {"version": VERSION, "spec": asdict(spec), "corpus": corpus.name,
              "tokenizer": tokenizer_key(tokenizer), "torch": torch.__version__.split("+")[0]}

    def build(out: Path) -> None:
        nonlocal data
        data = data or sweep_data(spec, root, progress)
        (out / "models").mkdir()
        runs = [(b, w) for b, widths in spec.grid for w in widths]
        rows = []
        for budget, width in tqdm(runs, desc="IsoFLOP sweep", disable=not progress):
            row, state = train_run(width, budget, spec, data["train"], data["val"], data["items"], data["tokenizer"])
            torch.save(state, out / "models" / f"{row['id']}.pt")
            rows.append(row)
        (out / "runs.json").write_text(json.dumps({"spec": asdict(spec), "runs": rows}, indent=1))

    return build_or_load("isoflop_sweep", recipe, build, root=root)


def isoflop_sweep(mode: RunMode | str = "fast", root=None, progress: bool = True,
                  spec: SweepSpec | None = None) -> list[dict]:
    """The runs of the sweep for ``mode`` (trained on first use, then loaded)."""
    folder = isoflop_folder(mode, root, progress, spec)
    return json.loads((folder / "runs.json").read_text())["runs"]


def load_sweep_model(run: dict, folder: Path, spec: SweepSpec) -> Llama:
    """The trained model of ``run`` from the sweep artifact ``folder``."""
    model = Llama(ladder_config(run["width"], spec.vocab_size, spec.seq_len))
    model.load_state_dict(torch.load(Path(folder) / "models" / f"{run['id']}.pt", weights_only=True))
    return model.eval()
