"""Shape against size: at a fixed number of non-embedding weights, does the depth/width split matter?

Kaplan et al. (2020, §3.1, Figure 5) trained Transformers of equal non-embedding size ``N`` with depths from 2 to
200+ layers and found the loss within a few percent over aspect ratios ``d_model / n_layers`` from about 20 to 200:
at a given ``N``, size matters and shape barely does. Scaling-law work since, the Llama 3 report's IsoFLOP sweep
(§3.2.1) included, therefore varies one size knob and fixes the shape.

Here, at the book's scale, with the IsoFLOP sweep's recipe (``isoflop.train_model``: same corpus, tokenizer,
schedule, learning rate; ``SweepSpec``):

- **shapes**: for each depth in ``ShapeSpec.depths``, the even width whose ``N = n_layers · params_per_layer``
  (Kaplan's non-embedding count; the tied embedding is left out) is closest to ``target_params``;
- **sizes**: ``contrast_params`` at ``contrast_depth``, to show what a change of ``N`` does by comparison;
- **noise**: the ``seed_depth`` shape trained again from another initialisation, and every model's held-out loss
  per evaluation batch (``batch_losses``), so differences get a paired standard error.

Every model trains on the same ``steps × batch_size`` sequences, in the same order. ``shape_sweep(mode)`` returns
the runs, cached as the ``shape_sweep`` artifact.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from minillm.config import ModelConfig
from minillm.device import RunMode
from minillm.train.isoflop import SweepSpec, ladder_config, sweep_data, sweep_spec, train_model
from minillm.train.packing import IGNORE, batch_at

VERSION = 1


@dataclass(frozen=True)
class ShapeSpec:
    """Depths of the equal-size models, their non-embedding size, the contrast sizes, and the training length."""

    depths: tuple[int, ...] = (1, 2, 4, 8)
    target_params: int = 16_000
    contrast_params: tuple[int, ...] = (4_000, 64_000)
    contrast_depth: int = 2
    seed_depth: int | None = 2            # this shape is trained a second time, from seed + 1
    steps: int = 400
    batch_size: int = 16

    def __post_init__(self) -> None:
        if len(set(self.depths)) < 3 or min(self.depths) < 1:
            raise ValueError(f"ShapeSpec.depths needs >= 3 distinct depths >= 1 to show a trend, got {self.depths}")
        for name in ("target_params", "steps", "batch_size", "contrast_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"ShapeSpec.{name} must be >= 1, got {getattr(self, name)}")
        if any(abs(math.log(p / self.target_params)) < math.log(2) for p in self.contrast_params):
            raise ValueError(f"ShapeSpec.contrast_params {self.contrast_params} must differ from target_params "
                             f"({self.target_params}) by at least 2x, or they do not show a change of size")
        if self.seed_depth is not None and self.seed_depth not in self.depths:
            raise ValueError(f"ShapeSpec.seed_depth ({self.seed_depth}) must be one of depths {self.depths}")


def nonembedding_params(cfg: ModelConfig) -> int:
    """Kaplan et al.'s ``N``: the weights of the blocks (attention, MLP, their norms), no embedding or head."""
    return cfg.n_layers * cfg.params_per_layer()


def shape_config(n_layers: int, width: int, vocab_size: int, seq_len: int) -> ModelConfig:
    """The sweep's ladder model of ``width`` (heads, FFN, tied embedding) with ``n_layers`` blocks instead."""
    return ladder_config(width, vocab_size, seq_len).replace(n_layers=n_layers, name=f"shape-L{n_layers}-d{width}")


def width_for(n_layers: int, params: int, vocab_size: int, seq_len: int, max_width: int = 512) -> int:
    """The width (of those the ladder's head layout allows) whose ``shape_config`` has ``nonembedding_params``
    closest to ``params``."""
    sizes = {}
    for w in range(2, max_width + 1, 2):
        try:
            sizes[w] = nonembedding_params(shape_config(n_layers, w, vocab_size, seq_len))
        except ValueError:                                  # heads of odd size: RoPE needs pairs
            continue
    return min(sizes, key=lambda w: abs(sizes[w] - params))


def shape_plan(spec: ShapeSpec, sweep: SweepSpec) -> list[dict]:
    """The runs: ``{"kind": "shape" | "size" | "seed", "n_layers", "width", "seed"}``, shapes first."""
    V, T = sweep.vocab_size, sweep.seq_len
    plan = [dict(kind="shape", n_layers=L, width=width_for(L, spec.target_params, V, T), seed=sweep.seed)
            for L in spec.depths]
    plan += [dict(kind="size", n_layers=spec.contrast_depth, width=width_for(spec.contrast_depth, p, V, T),
                  seed=sweep.seed) for p in spec.contrast_params]
    if spec.seed_depth is not None:
        width = next(r["width"] for r in plan if r["n_layers"] == spec.seed_depth)
        plan.append(dict(kind="seed", n_layers=spec.seed_depth, width=width, seed=sweep.seed + 1))
    return plan


@torch.no_grad()
def batch_losses(model, data, seq_len: int, batch_size: int = 32, max_batches: int | None = None) -> list[float]:
    """Held-out loss (nats/token) of each of the first ``max_batches`` batches of ``data``, as ``evaluate`` reads
    them (windows of ``seq_len``, document masks): the samples of a paired comparison between models."""
    from minillm.train.evaluate import token_losses

    model.eval()
    windows = data.n_windows(seq_len)
    n = math.ceil(windows / batch_size) if max_batches is None else min(max_batches, math.ceil(windows / batch_size))
    out = []
    for b in range(n):
        rows = min(batch_size, windows - b * batch_size)
        batch = batch_at(data, b * batch_size * seq_len, rows, seq_len)
        losses = token_losses(model, batch.tokens, batch.targets, batch.doc_ids)       # (rows, seq_len)
        out.append(float(losses.double().sum()) / int((batch.targets != IGNORE).sum()))
    return out


def shape_spec(mode: RunMode | str) -> ShapeSpec:
    """Fast (a smoke test): depths 1, 2, 4 and one smaller size, 80 steps of 16 sequences (82K tokens), no second
    seed. Book: depths 1, 2, 4, 8, sizes 4× smaller and larger, a second seed, 300 steps (307K tokens)."""
    mode = RunMode(mode) if isinstance(mode, str) else mode
    return mode.pick(fast=ShapeSpec(depths=(1, 2, 4), contrast_params=(4_000,), seed_depth=None, steps=80),
                     book=ShapeSpec(steps=300), full=ShapeSpec(steps=1200))


def shape_folder(mode: RunMode | str = "fast", root=None, progress: bool = True, spec: ShapeSpec | None = None,
                 sweep: SweepSpec | None = None, data: dict | None = None) -> Path:
    """The artifact folder, with ``runs.json``: one dict per run of ``shape_plan``."""
    from tqdm.auto import tqdm

    from minillm.artifacts import build_or_load
    from minillm.data.corpus import curated_corpus
    from minillm.tokenizer import book_tokenizer
    from minillm.train.pretrain import tokenizer_key

    spec, sweep = spec or shape_spec(mode), sweep or sweep_spec(mode)
    tokenizer = data["tokenizer"] if data else book_tokenizer(vocab_size=sweep.vocab_size, root=root)
    corpus = data["corpus"] if data else curated_corpus("fast", root=root, progress=progress)
    recipe = {"version": VERSION, "spec": asdict(spec), "sweep": asdict(sweep), "corpus": corpus.name,
              "tokenizer": tokenizer_key(tokenizer), "torch": torch.__version__.split("+")[0]}

    def build(out: Path) -> None:
        nonlocal data
        data = data or sweep_data(sweep, root, progress)
        threads = torch.get_num_threads()
        # models this small gain nothing from a second CPU thread, and on shared cores a second thread that waits
        # for the first made these runs 10x slower (measured: 555 s against 51 s); the losses do not change
        torch.set_num_threads(1)
        try:
            rows = [_train(run, spec, sweep, data) for run in tqdm(shape_plan(spec, sweep), desc="shape sweep",
                                                                   disable=not progress)]
        finally:
            torch.set_num_threads(threads)
        (out / "runs.json").write_text(json.dumps({"spec": asdict(spec), "runs": rows}, indent=1))

    return build_or_load("shape_sweep", recipe, build, root=root)


def _train(run: dict, spec: ShapeSpec, sweep: SweepSpec, data: dict) -> dict:
    """One run of ``shape_plan``: trained with the sweep's recipe, scored per held-out batch."""
    cfg = shape_config(run["n_layers"], run["width"], sweep.vocab_size, sweep.seq_len)
    model, trainer, seconds = train_model(cfg, spec.steps, spec.batch_size, sweep, data["train"], seed=run["seed"])
    losses = batch_losses(model, data["val"], sweep.seq_len, 32, sweep.eval_batches)
    return dict(run, params=nonembedding_params(cfg), params_total=cfg.num_params(), aspect=cfg.dim / cfg.n_layers,
                tokens=trainer.tokens_seen, loss=sum(losses) / len(losses), batch_losses=losses, seconds=seconds,
                first_loss=trainer.history[0]["loss"], last_train_loss=trainer.history[-1]["loss"])


def shape_sweep(mode: RunMode | str = "fast", root=None, progress: bool = True, **kwargs) -> list[dict]:
    """The runs of the shape sweep for ``mode`` (trained on first use, then loaded)."""
    return json.loads((shape_folder(mode, root, progress, **kwargs) / "runs.json").read_text())["runs"]
