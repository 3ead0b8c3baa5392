"""Checkpoints for exact resume, and checkpoint averaging (report §3.4.3).

A checkpoint is a folder ``<run>/step_000123/`` holding

- ``model.safetensors``: the weights (``safetensors.torch.save_model``: tied tensors stored once);
- ``optimizer.safetensors``: AdamW's per-parameter state (``<param index>.exp_avg``, ``.exp_avg_sq``, ``.step``);
- ``rng.safetensors``: the torch CPU (and CUDA) generator states;
- ``state.json``: the step, tokens seen, the data loader's position, the optimizer's param groups, Python's and
  NumPy's RNG states and whatever else the trainer adds.

Together they are everything the next step depends on, so a run stopped after step k and resumed from its checkpoint
computes bit-identical losses to one that never stopped (``tests/test_train_resume.py``). A checkpoint is written to a
temporary folder and renamed when complete, so a crash mid-save never leaves a half checkpoint that looks whole.
Under data parallelism only rank 0 writes; the RNG states saved are rank 0's (training draws no random numbers).

``average_checkpoints``: §3.4.3 — "we compute the average of model checkpoints (Polyak (1991) averaging) during
annealing to produce the final pre-trained model".
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

STATE_FILE = "state.json"


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """``run_dir/step_000123``."""
    return Path(run_dir) / f"step_{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.glob("step_*") if (p / STATE_FILE).is_file())


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
    """Write model, optimizer, RNG and ``state`` (JSON-able dict) into folder ``path`` atomically; return it."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    meta = dict(state or {})
    if optimizer is not None:
        opt = optimizer.state_dict()
        tensors = {f"{idx}.{key}": value.detach().contiguous()
                   for idx, slots in opt["state"].items() for key, value in slots.items()
                   if isinstance(value, torch.Tensor)}
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        meta["optimizer_param_groups"] = opt["param_groups"]
    rng_tensors, meta["rng"] = rng_state()
    save_file({k: v.contiguous() for k, v in rng_tensors.items()}, str(tmp / "rng.safetensors"))
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def load_checkpoint(path: str | Path, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> dict:
    """Load what ``save_checkpoint`` wrote into ``model``/``optimizer`` (each optional); return the JSON state."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE}); see list_checkpoints(run_dir)")
    meta = json.loads((path / STATE_FILE).read_text())
    if model is not None:
        device = next(model.parameters()).device
        load_model(model, str(path / "model.safetensors"), device=str(device))
    if optimizer is not None:
        if "optimizer_param_groups" not in meta:
            raise ValueError(f"{path} holds no optimizer state; load it with optimizer=None")
        flat = load_file(str(path / "optimizer.safetensors"))
        state: dict[int, dict] = {}
        for key, value in flat.items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["optimizer_param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    if restore_rng:
        set_rng_state(load_file(str(path / "rng.safetensors")), meta["rng"])
    return meta


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
