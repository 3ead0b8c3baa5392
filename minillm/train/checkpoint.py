"""Checkpoints for exact resume, and checkpoint averaging (report §3.4.3).

A checkpoint is a folder ``<run>/step_000123/`` holding

- ``model.safetensors``: the weights (``safetensors.torch.save_model``: tied tensors stored once);
- ``optimizer.safetensors``: AdamW's per-parameter state (``<param index>.exp_avg``, ``.exp_avg_sq``, ``.step``);
- ``rng.safetensors``: the torch CPU (and CUDA) generator states;
- ``state.json``: the step, tokens seen, the data loader's position, the optimizer's param groups, Python's and
  NumPy's RNG states and whatever else the trainer adds.

Together they are everything the next step depends on, so a run stopped after step k and resumed from its checkpoint
computes bit-identical losses to one that never stopped (``tests/test_train_resume.py``).
Under data parallelism only rank 0 writes; the RNG states saved are rank 0's (training draws no random numbers).

Crash safety (``tests/test_train_checkpoint_crash.py``):

- a checkpoint is written to ``.tmp-step_…-<pid>``, fsynced and renamed into place (``minillm.durable``): a folder
  named ``step_…`` is complete, and the previous checkpoint stays until the new one is;
- ``list_checkpoints`` orders by step *number* (text order puts ``step_1000000`` before ``step_999999``) and skips,
  with a logged warning, any checkpoint whose files do not parse (truncated by a full disk, a bad copy, the old
  non-atomic format): ``latest_checkpoint`` is the newest complete one;
- ``load_checkpoint`` reads and checks every file before it changes the model, the optimizer or the RNGs, so a bad
  file raises ``CheckpointError`` naming it and leaves the trainer as it was.

``average_checkpoints``: §3.4.3 — "we compute the average of model checkpoints (Polyak (1991) averaging) during
annealing to produce the final pre-trained model".
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from minillm.durable import fsync_tree, remove_stale_temporaries, replace_dir

STATE_FILE = "state.json"
MODEL_FILE, OPTIMIZER_FILE, RNG_FILE = "model.safetensors", "optimizer.safetensors", "rng.safetensors"
_STEP_NAME = re.compile(r"step_(\d+)")
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or does not match the model/optimizer it is loaded into."""


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """``run_dir/step_000123`` (more digits from step 1,000,000 on)."""
    return Path(run_dir) / f"step_{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, ordered by step number, oldest first; incomplete ones are skipped (warning)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        match = _STEP_NAME.fullmatch(p.name)
        if match is None or not p.is_dir():
            continue
        try:
            check_checkpoint(p)
        except CheckpointError as err:
            log.warning("skipping incomplete checkpoint %s: %s", p.name, err)
            continue
        found.append((int(match.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (the one to resume from), or ``None`` when there is none."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def check_checkpoint(path: str | Path) -> dict:
    """Check that every file of checkpoint ``path`` is there and whole; return its JSON state.

    Reads only ``state.json`` and the safetensors headers (cheap): a safetensors file is an 8-byte header length, a
    JSON header giving each tensor's byte range, then the data, so a truncated file is shorter than its header says.
    """
    path = Path(path)
    file = path / STATE_FILE
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{file} is missing or not valid JSON ({err}): the checkpoint is incomplete; "
                              f"resume from latest_checkpoint(run_dir), which skips it") from err
    if not isinstance(meta, dict) or "rng" not in meta:
        raise CheckpointError(f"{file} holds no RNG state: not written by save_checkpoint")
    names = [MODEL_FILE, RNG_FILE] + ([OPTIMIZER_FILE] if "optimizer_param_groups" in meta else [])
    for name in names:
        _check_safetensors(path / name)
    return meta


def _check_safetensors(file: Path) -> None:
    """Raise ``CheckpointError`` naming ``file`` if it is missing or shorter/longer than its header says."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                raise ValueError(f"{size} bytes cannot hold a {n}-byte header")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end != size:
            raise ValueError(f"{size} bytes, its header says {8 + n + end}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{file} is missing or truncated ({err}): the checkpoint is incomplete; resume from "
                              f"latest_checkpoint(run_dir), which skips it") from err


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """The state of every generator: tensors (torch CPU/CUDA) and JSON (Python, NumPy)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return tensors, {"python": [version, list(internal), gauss],
                     "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def set_rng_state(tensors: dict[str, torch.Tensor], states: dict) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    state: dict | None = None) -> Path:
    """Write model, optimizer, RNG and ``state`` (JSON-able dict) into folder ``path`` atomically; return it.

    Files go to ``.tmp-<name>-<pid>``, are fsynced and renamed to ``path`` (replacing an older ``path`` only once
    the new one is complete). Temporary folders left by killed processes in the same run folder are deleted first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_model(model, str(tmp / MODEL_FILE))
        meta = dict(state or {})
        if optimizer is not None:
            opt = optimizer.state_dict()
            tensors = {f"{idx}.{key}": value.detach().contiguous()
                       for idx, slots in opt["state"].items() for key, value in slots.items()
                       if isinstance(value, torch.Tensor)}
            save_file(tensors, str(tmp / OPTIMIZER_FILE))
            meta["optimizer_param_groups"] = opt["param_groups"]
        rng_tensors, meta["rng"] = rng_state()
        save_file({k: v.contiguous() for k, v in rng_tensors.items()}, str(tmp / RNG_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(meta, indent=1))
        fsync_tree(tmp)
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_checkpoint(path: str | Path, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> dict:
    """Load what ``save_checkpoint`` wrote into ``model``/``optimizer`` (each optional); return the JSON state.

    Every file is read and checked against the model and optimizer first; only then is anything changed, so a
    truncated or mismatched checkpoint raises ``CheckpointError`` and leaves model, optimizer and RNGs as they were.
    """
    path = Path(path)
    meta = check_checkpoint(path)
    if optimizer is not None and "optimizer_param_groups" not in meta:
        raise CheckpointError(f"{path} holds no optimizer state; load it with optimizer=None")
    weights = opt_state = rng = None
    if model is not None:
        weights = _read(path / MODEL_FILE, str(next(model.parameters()).device))
        _check_weights(model, weights, path / MODEL_FILE)
    if optimizer is not None:
        state: dict[int, dict] = {}
        for key, value in _read(path / OPTIMIZER_FILE).items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["optimizer_param_groups"]]
        opt_state = {"state": state, "param_groups": groups}
    if restore_rng:
        rng = _read(path / RNG_FILE)
        if "torch" not in rng or rng["torch"].shape != torch.get_rng_state().shape:
            raise CheckpointError(f"{path / RNG_FILE} holds no torch generator state of the right size")
    # everything is read and checked: now change state (the optimizer checks its groups before it changes anything)
    if opt_state is not None:
        try:
            optimizer.load_state_dict(opt_state)
        except ValueError as err:
            raise CheckpointError(f"{path / OPTIMIZER_FILE} does not fit this optimizer: {err}") from err
    if weights is not None:
        model.load_state_dict(weights, strict=False)  # names checked above; tied copies are stored once
    if rng is not None:
        set_rng_state(rng, meta["rng"])
    return meta


def _read(file: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; ``CheckpointError`` naming it when it does not parse."""
    try:
        return load_file(str(file), device=device)
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError for a missing file)
        raise CheckpointError(f"{file} cannot be read ({err}): the checkpoint is damaged; resume from an earlier "
                              f"one") from err


def _check_weights(model: nn.Module, weights: dict[str, torch.Tensor], file: Path) -> None:
    """Raise ``CheckpointError`` unless ``weights`` holds every tensor of ``model`` (tied ones once) in its shape."""
    own = model.state_dict()
    tied: dict[tuple, list[str]] = {}  # names sharing one tensor (tied embeddings): save_model keeps one of them
    for name, t in own.items():
        tied.setdefault((t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)), []).append(name)
    missing = [names[0] for names in tied.values() if not any(n in weights for n in names)]
    unexpected = sorted(set(weights) - set(own))
    wrong = [f"{n} {tuple(w.shape)} (model: {tuple(own[n].shape)})" for n, w in weights.items()
             if n in own and w.shape != own[n].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{file} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                              f"other shapes {wrong[:5]}; load it into a model of the config it was saved from")


def average_checkpoints(paths: Sequence[str | Path], out: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The element-wise mean of the weights of ``paths`` (checkpoint folders or ``.safetensors`` files), computed in
    fp64 and cast back to each tensor's dtype. With ``out``, also written as a safetensors file that
    ``safetensors.torch.load_model(model, out)`` (or ``load_checkpoint``-style loading) reads.

    §3.4.3 averages the checkpoints of the annealing phase; ``average_checkpoints(list_checkpoints(run)[-k:])``
    averages the last ``k``.
    """
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint; got an empty list")
    files = [Path(p) / "model.safetensors" if Path(p).is_dir() else Path(p) for p in paths]
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for i, f in enumerate(files):
        weights = load_file(str(f))
        if i and weights.keys() != total.keys():
            raise ValueError(f"{f} holds other tensors than {files[0]}: average checkpoints of one model only")
        for name, w in weights.items():
            dtypes[name] = w.dtype
            total[name] = total[name] + w.double() if i else w.double()
    averaged = {name: (t / len(files)).to(dtypes[name]).contiguous() for name, t in total.items()}
    if out is not None:
        save_file(averaged, str(out))
    return averaged
