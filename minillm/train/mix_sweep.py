"""The data-mix experiment: tiny Llamas trained on different mixes of the corpus's domains (report §3.1.2).

Every run sees the same number of tokens (``MixSpec.tokens``); only the share of each domain changes. Three model
sizes of ``isoflop.ladder_config`` (the width is the knob):

1. ``small``: one run per mix of ``fit_mixes``, to fit the per-domain laws of ``minillm.data.mix_laws``;
2. ``medium``: a few of the same mixes, to refit the laws' offsets at a second size;
3. ``large``: the mix the laws pick and the baselines, trained only to check the prediction made before they ran.

``mix_experiment`` runs 1-3 and caches every record as one artifact (``mix_runs``, through
``minillm.artifacts.build_or_load``); step 3 trains the mix ``choose_mix`` picks from steps 1-2 alone, and the
chapter repeats that choice from the cached fitting runs before it looks at the large runs. The training stream of a mix takes
``share × tokens`` tokens from each domain's packed documents (repeating them if the domain is too small), cuts them
into windows of ``seq_len + 1`` and shuffles the windows together; each domain's held-out documents give its loss.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from minillm.data.classifier import one_thread
from minillm.device import RunMode
from minillm.model import Llama
from minillm.train.evaluate import evaluate
from minillm.train.isoflop import ladder_config
from minillm.train.packing import PackedData, pack_texts
from minillm.train.schedules import BatchRamp, LRSchedule
from minillm.train.trainer import TrainConfig, Trainer

VERSION = 1
MIX_DOMAINS = ("general", "math", "code")


def permutations_of(shares: Sequence[float], domains: Sequence[str] = MIX_DOMAINS) -> list[dict[str, float]]:
    """Every assignment of ``shares`` to ``domains`` (distinct mixes only, in a fixed order)."""
    seen, out = set(), []
    for perm in itertools.permutations(shares):
        if perm not in seen:
            seen.add(perm)
            out.append(dict(zip(domains, perm)))
    return out


@dataclass(frozen=True)
class MixSpec:
    """The runs' shared settings: widths of the three sizes, token budget, batch and schedule."""

    widths: tuple[int, int, int] = (16, 32, 64)
    tokens: int = 120_000                 # training tokens of every run
    batch_size: int = 16                  # sequences per step
    seq_len: int = 64
    vocab_size: int = 1024
    peak_lr: float = 1e-2
    eval_batches: int = 8                 # held-out batches of 16 × seq_len tokens per domain
    held_out_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not (len(self.widths) == 3 and self.widths[0] < self.widths[1] < self.widths[2]):
            raise ValueError(f"MixSpec.widths needs 3 increasing widths (small, medium, large), got {self.widths}")
        if self.tokens < self.batch_size * self.seq_len * 10:
            raise ValueError(f"MixSpec.tokens ({self.tokens}) must cover at least 10 steps of "
                             f"{self.batch_size} × {self.seq_len} tokens")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"MixSpec.held_out_fraction must lie in (0, 1), got {self.held_out_fraction}")

    @property
    def steps(self) -> int:
        return self.tokens // (self.batch_size * self.seq_len)


def mix_spec(mode: RunMode | str) -> MixSpec:
    """Fast: 120K tokens per run (117 steps of 16 × 64); book: 240K (234 steps)."""
    mode = RunMode(mode) if isinstance(mode, str) else mode
    return mode.pick(fast=MixSpec(), book=MixSpec(tokens=240_000), full=MixSpec(tokens=1_000_000))


def fit_mixes(mode: RunMode | str) -> list[dict[str, float]]:
    """The mixes of the small models: the uniform mix and every permutation of (0.6, 0.3, 0.1); book mode adds
    those of (0.75, 0.2, 0.05). Each domain then sees 4 (fast) or 7 (book) distinct shares."""
    mode = RunMode(mode) if isinstance(mode, str) else mode
    third = 1 / 3
    mixes = [dict.fromkeys(MIX_DOMAINS, third)] + permutations_of((0.6, 0.3, 0.1))
    return mixes + mode.pick(fast=[], book=permutations_of((0.75, 0.2, 0.05)), full=permutations_of((0.75, 0.2, 0.05)))


def domain_streams(docs: Sequence[dict], tokenizer, spec: MixSpec) -> tuple[dict, dict]:
    """``(train, held)``: per domain, the packed train stream (documents shuffled) and the held-out stream."""
    from minillm.eval import split_documents

    train_docs, held_docs = split_documents(docs, spec.held_out_fraction, spec.seed)
    train = {d: pack_texts([x["text"] for x in train_docs if x["domain"] == d], tokenizer, shuffle_seed=spec.seed,
                           with_bytes=False) for d in MIX_DOMAINS}
    held = {d: pack_texts([x["text"] for x in held_docs if x["domain"] == d], tokenizer, with_bytes=False)
            for d in MIX_DOMAINS}
    return train, held


def mixed_stream(streams: Mapping[str, PackedData], mix: Mapping[str, float], windows: int, seq_len: int,
                 seed: int = 0) -> PackedData:
    """About ``mix[d] · windows`` windows of ``seq_len`` tokens from each domain ``d`` (its stream repeated if too
    short), shuffled together. Doc ids are made unique per window: the target after a window's last token lies in
    another window and is ignored, so a window is one training row of the ``StreamLoader``."""
    parts = []
    for d, share in mix.items():
        n = round(share * windows)
        if n == 0:
            continue
        s = streams[d]
        reps = -(-(n * seq_len) // len(s))
        tok = s.tokens.repeat(reps)[: n * seq_len].view(n, seq_len)                  # (n, T)
        ids = s.doc_ids.repeat(reps)[: n * seq_len].view(n, seq_len)                 # (n, T)
        parts.append((tok, ids))
    tok = torch.cat([t for t, _ in parts])                                           # (W, T)
    ids = torch.cat([i for _, i in parts])                                           # (W, T)
    order = torch.randperm(len(tok), generator=torch.Generator().manual_seed(seed))
    tok, ids = tok[order], ids[order]
    change = torch.cat([torch.zeros(len(ids), 1, dtype=torch.long),
                        (ids[:, 1:] != ids[:, :-1]).long().cumsum(1)], 1)           # (W, T): k-th doc in row
    ids = change + torch.arange(len(ids))[:, None] * seq_len                         # unique across rows
    return PackedData(tok.reshape(-1), ids.reshape(-1))                              # (W·T,)


def train_mix(mix: Mapping[str, float], width: int, spec: MixSpec, train: Mapping[str, PackedData],
              held: Mapping[str, PackedData], seed: int | None = None) -> dict:
    """Train the width-``width`` ladder model on ``spec.tokens`` tokens of ``mix``; return the run's record."""
    seed = spec.seed if seed is None else seed
    cfg = ladder_config(width, spec.vocab_size, spec.seq_len)
    # a few spare windows: the loader reads one token past a batch, and shares round
    data = mixed_stream(train, mix, spec.steps * spec.batch_size + 4, spec.seq_len, seed)
    torch.manual_seed(seed)
    model = Llama(cfg)
    steps = spec.steps
    schedule = LRSchedule(spec.peak_lr, max(1, steps // 20), steps, spec.peak_lr / 10)
    tcfg = TrainConfig(steps=steps, schedule=schedule, batch=BatchRamp.constant(spec.batch_size, spec.seq_len),
                       micro_batch_size=spec.batch_size, progress=False)
    start = time.perf_counter()
    trainer = Trainer(model, tcfg, data)
    trainer.fit()
    losses = {d: evaluate(model, held[d], spec.seq_len, 16, spec.eval_batches)["loss"] for d in MIX_DOMAINS}
    return dict(mix=dict(mix), width=width, params=cfg.num_params(), seed=seed, losses=losses,
                tokens=trainer.tokens_seen, seconds=time.perf_counter() - start)


def fit_jobs(mode: RunMode | str, spec: MixSpec) -> tuple[list, list[int]]:
    """``(jobs, seeds)`` of the fitting runs: every ``fit_mixes`` mix at the small width, the first 3 (fast) or 4
    (book) at the medium width, and the uniform mix again at the small width with another seed (the noise)."""
    mode = RunMode(mode) if isinstance(mode, str) else mode
    mixes = fit_mixes(mode)
    medium = mixes[: mode.pick(fast=3, book=4, full=4)]
    jobs = [(m, spec.widths[0]) for m in mixes] + [(m, spec.widths[1]) for m in medium] + [(mixes[0], spec.widths[0])]
    return jobs, [spec.seed] * (len(jobs) - 1) + [spec.seed + 1]


def choose_mix(fit_runs: Sequence[dict], spec: MixSpec, target_params: int) -> dict:
    """Fit the laws on the small runs, refit offsets on the medium ones, extrapolate to ``target_params`` and pick
    the mix minimising the mean domain loss within the shares the small runs covered (``minillm.data.mix_laws``)."""
    from minillm.data import mix_laws as ml

    small = [r for r in fit_runs if r["width"] == spec.widths[0] and r["seed"] == spec.seed]
    medium = [r for r in fit_runs if r["width"] == spec.widths[1]]
    laws = ml.fit_mix_laws(small, MIX_DOMAINS)
    laws_medium = ml.refit_offsets(laws, medium)
    laws_large = ml.extrapolate_offsets(laws, laws_medium, small[0]["params"], medium[0]["params"], target_params)
    bounds = {d: (min(r["mix"][d] for r in small), max(r["mix"][d] for r in small)) for d in MIX_DOMAINS}
    return dict(laws=laws, laws_medium=laws_medium, laws_large=laws_large, bounds=bounds,
                best=ml.best_mix(laws, bounds))


def baseline_mixes(mode: RunMode | str) -> dict[str, dict[str, float]]:
    """The mixes the chosen one is checked against: the report's without multilingual (renormalised), and in book
    mode the uniform mix."""
    from minillm.data.mix import REPORT_MIX

    mode = RunMode(mode) if isinstance(mode, str) else mode
    norm = sum(REPORT_MIX[d] for d in MIX_DOMAINS)
    out = {"report": {d: REPORT_MIX[d] / norm for d in MIX_DOMAINS}}
    if mode.name != "fast":
        out["uniform"] = dict.fromkeys(MIX_DOMAINS, 1 / 3)
    return out


def mix_experiment(mode: RunMode | str, corpus: Path, root=None, progress: bool = True) -> dict:
    """The whole experiment, cached as one ``mix_runs`` artifact: the fitting runs (``fit_jobs``), then the large
    model trained on the mix ``choose_mix`` picks from them and on ``baseline_mixes``. Returns ``{"spec",
    "fit_runs", "best", "check_runs"}`` (each check run has a ``name``: ``chosen`` or a baseline's)."""
    from tqdm.auto import tqdm

    from minillm.artifacts import build_or_load
    from minillm.data.corpus import load_corpus
    from minillm.tokenizer import book_tokenizer
    from minillm.train.pretrain import tokenizer_key

    spec = mix_spec(mode)
    jobs, seeds = fit_jobs(mode, spec)
    baselines = baseline_mixes(mode)
    tokenizer = book_tokenizer(vocab_size=spec.vocab_size, root=root)
    recipe = {"version": VERSION, "spec": asdict(spec), "corpus": Path(corpus).name,
              "tokenizer": tokenizer_key(tokenizer), "torch": torch.__version__.split("+")[0],
              "jobs": [[{d: round(v, 6) for d, v in mix.items()}, w, s] for (mix, w), s in zip(jobs, seeds)],
              "baselines": {k: {d: round(v, 6) for d, v in m.items()} for k, m in baselines.items()}}

    def build(out: Path) -> None:
        with one_thread():          # tiny models: a second thread only waits (see classifier.one_thread)
            _build(out)

    def _build(out: Path) -> None:
        train, held = domain_streams(load_corpus(corpus), tokenizer, spec)
        bar = tqdm(total=len(jobs) + 1 + len(baselines), desc="mix runs", disable=not progress)
        fit_runs = []
        for (mix, w), seed in zip(jobs, seeds):
            fit_runs.append(train_mix(mix, w, spec, train, held, seed))
            bar.update()
        large = ladder_config(spec.widths[2], spec.vocab_size, spec.seq_len).num_params()
        best = choose_mix(fit_runs, spec, large)["best"]
        check = []
        for name, mix in [("chosen", best), *baselines.items()]:
            check.append(dict(train_mix(mix, spec.widths[2], spec, train, held), name=name))
            bar.update()
        bar.close()
        (out / "runs.json").write_text(json.dumps(dict(spec=asdict(spec), fit_runs=fit_runs, best=best,
                                                       check_runs=check), indent=1))

    folder = build_or_load("mix_runs", recipe, build, root=root)
    return json.loads((folder / "runs.json").read_text())
