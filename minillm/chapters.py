"""The book's chapters: how long each takes in each run mode, and which cached artifacts it reuses.

A reader who opens a chapter in Jupyter should know before running it what it will cost. ``setup(chapter=...)``
(the first cell of every chapter) prints ``banner(...)``: the run mode, this chapter's measured time in that mode,
the artifacts it loads from the cache or builds on first use (``minillm.artifacts``), and how to switch modes.

The times are wall-clock seconds of one ``make book`` (book mode, two torch threads) and one ``make test`` (fast
mode, one torch thread in each of its two lanes, the sum of a chapter's cells) from a clean clone with an empty
artifact cache, on ``MEASURED_ON``. A chapter that builds an
artifact pays for it the first time; later runs load it (the tokenizer in seconds, the base model in one).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

from minillm.device import DeviceChoice, RunMode, pick_device, seed_everything

MEASURED_ON = "2 CPU cores (AMD EPYC VM, torch 2.13 CPU build), clean clone, empty artifact cache, 2026-12-04"


@dataclass(frozen=True)
class Chapter:
    """A chapter of ``_toc.yml``: its notebook stem, title, measured seconds per mode and the artifacts it uses."""

    stem: str
    title: str
    seconds: dict[str, int] = field(default_factory=dict)   # mode -> measured wall seconds (first run)
    artifacts: tuple[str, ...] = ()                          # keys of ARTIFACTS, in the order the chapter needs them


CHAPTERS = {c.stem: c for c in (
    Chapter("00_llama3_herd", "The Llama 3 herd", {"fast": 3, "book": 4}),
    Chapter("01_pretraining_data", "Pre-training data", {"fast": 70, "book": 161},
            ("corpus", "sweep_tokenizer", "mix_runs")),
    Chapter("02_architecture", "Architecture", {"fast": 55, "book": 117}, ("tokenizer", "smollm2")),
    Chapter("03_training_recipe", "The training recipe", {"fast": 322, "book": 869},
            ("tokenizer", "corpus", "batch_ramp", "base_model", "annealed_model", "annealing_probe")),
    Chapter("04_scaling_laws", "Scaling laws", {"fast": 128, "book": 261},
            ("sweep_tokenizer", "isoflop_sweep", "shape_sweep")),
    Chapter("05_post_training", "Post-training", {"fast": 380, "book": 378}, ("tokenizer", "corpus", "base_model")),
    Chapter("06_serving", "Serving", {"fast": 53, "book": 147}),
    Chapter("07_parallelism", "Parallelism", {"fast": 43, "book": 76}),
    Chapter("08_quantization", "Quantization", {"fast": 94, "book": 189},
            ("smollm2", "tokenizer", "corpus", "base_model")),
)}


# Each probe asks for one artifact of a mode; under ``only_cached()`` it loads what is cached and builds nothing.
def _tokenizer(mode):
    from minillm.tokenizer import book_tokenizer
    return book_tokenizer()


def _sweep_tokenizer(mode):
    from minillm.tokenizer import book_tokenizer
    from minillm.train.isoflop import sweep_spec
    return book_tokenizer(vocab_size=sweep_spec(mode).vocab_size)


def _corpus(mode):
    from minillm.data.corpus import curated_corpus
    return curated_corpus(mode, progress=False)


def _base_model(mode):
    from minillm.train.pretrain import base_model_folder
    return base_model_folder(mode, progress=False)


def _annealed_model(mode):
    from minillm.train.annealing import annealed_model
    return annealed_model(mode, progress=False)


def _annealing_probe(mode):
    from minillm.train.annealing import probed_datasets
    return probed_datasets(mode, progress=False)


def _batch_ramp(mode):
    from minillm.train.batch_ramp_experiment import batch_ramp_runs
    return batch_ramp_runs(mode, progress=False)


def _isoflop_sweep(mode):
    from minillm.train.isoflop import isoflop_folder
    return isoflop_folder(mode, progress=False)


def _shape_sweep(mode):
    from minillm.train.shape_sweep import shape_folder
    return shape_folder(mode, progress=False)


def _mix_runs(mode):
    from minillm.data.corpus import curated_corpus
    from minillm.train.mix_sweep import mix_experiment
    return mix_experiment(mode, curated_corpus(mode, progress=False), progress=False)


def _smollm2(mode):
    from minillm.model.load import load_smollm2
    return load_smollm2()


PROBES = {"tokenizer": _tokenizer, "sweep_tokenizer": _sweep_tokenizer, "corpus": _corpus,
          "base_model": _base_model, "annealed_model": _annealed_model, "annealing_probe": _annealing_probe,
          "batch_ramp": _batch_ramp, "isoflop_sweep": _isoflop_sweep,
          "shape_sweep": _shape_sweep, "mix_runs": _mix_runs, "smollm2": _smollm2}

ARTIFACTS = {"tokenizer": "the book's 8K BPE tokenizer", "sweep_tokenizer": "the 1K BPE tokenizer of the sweep",
             "corpus": "the curated corpus", "base_model": "the base model", "annealed_model": "the annealed model",
             "annealing_probe": "the annealing probe's runs",
             "batch_ramp": "the batch-ramp runs (ramp vs constant)",
             "isoflop_sweep": "the IsoFLOP sweep's models", "shape_sweep": "the shape-vs-size runs",
             "mix_runs": "the data-mix experiment's runs", "smollm2": "SmolLM2-135M-Instruct, read from its GGUF"}


def artifact_cached(name: str, mode: RunMode) -> bool:
    """Whether artifact ``name`` (a key of ``ARTIFACTS``) of ``mode`` is in the cache; builds nothing."""
    from minillm.artifacts import NotCached, only_cached

    if name not in ARTIFACTS:
        raise ValueError(f"unknown artifact {name!r}; one of {sorted(ARTIFACTS)}")
    quiet = logging.getLogger("minillm.artifacts")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with only_cached():
            PROBES[name](mode)
        return True
    except NotCached:
        return False
    finally:
        quiet.setLevel(level)


def _minutes(seconds: int) -> str:
    return f"{seconds} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def banner(chapter: str, mode: RunMode, device: DeviceChoice, cached: dict[str, bool] | None = None) -> str:
    """What the first cell of ``chapter`` prints: mode, expected time, artifacts reused or built, how to switch.
    ``cached`` maps artifact names to "is it cached" (default: look in the cache)."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; one of {sorted(CHAPTERS)}")
    ch = CHAPTERS[chapter]
    cached = cached if cached is not None else {a: artifact_cached(a, mode) for a in ch.artifacts}
    lines = [f"run mode: {mode.name} · device: {device}"]       # short lines: the book's page is narrow
    if mode.name in ch.seconds:
        cores = os.cpu_count() or 1
        where = ("2 CPU cores; a GPU or more cores is faster" if device.device.type != "cpu" or cores > 2
                 else "2 CPU cores, like this machine")
        lines.append(f"expected time: about {_minutes(ch.seconds[mode.name])} with an empty cache")
        lines.append(f"               (measured on {where})")
    else:
        lines.append("expected time: longer runs, not timed on 2 CPU cores")
    for name in ch.artifacts:
        state = "cached: loaded" if cached[name] else "built now, once; later runs load it"
        lines.append(f"uses {ARTIFACTS[name]}")
        lines.append(f"     ({state})")
    others = [m for m in ("fast", "book", "full") if m != mode.name]
    lines.append("switch: MINILLM_MODE=" + " or ".join(others) + ", set before Jupyter starts")
    if mode.name != "fast":
        lines.append(f"        (fast mode: about {_minutes(ch.seconds['fast'])} for this chapter)")
    return "\n".join(lines)


def setup(seed: int = 0, environ: Mapping[str, str] | None = None,
          chapter: str | None = None) -> tuple[RunMode, DeviceChoice]:
    """The first cell of every chapter: seed everything, read the run mode, pick the device, and send the package's
    status lines (``minillm.*`` loggers at INFO: "tokenizer: loaded from cache") to stderr in a short form.
    With ``chapter`` (a notebook stem such as ``"03_training_recipe"``) it prints ``banner``: the
    mode, the chapter's measured time in it, the cached artifacts it reuses, and how to switch."""
    seed_everything(seed)
    _log_to_stderr()
    mode, device = RunMode.from_env(environ), pick_device()
    if chapter is not None:
        print(banner(chapter, mode, device))
    return mode, device


def _log_to_stderr() -> None:
    """One stderr handler on the ``minillm`` logger ("[minillm] message"), unless the caller configured one."""
    import logging
    import sys

    logger = logging.getLogger("minillm")
    if not any(getattr(h, "_minillm", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[minillm] %(message)s"))
        handler._minillm = True
        logger.addHandler(handler)
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
