"""The pre-training loop (report §3.4): packed batches with document masks, AdamW, schedules, clipping,
evaluation, checkpoints with exact resume, and data parallelism.

One optimizer step:

    stage = ramp.at(tokens_seen)                      # batch size and sequence length (§3.4.1 ramp)
    batch = loader.next_batch(stage.batch_size, stage.seq_len)      # the *global* batch, (B, T)
    my rows = batch[rank·B/W : (rank+1)·B/W]          # data parallel: each of W ranks takes its share
    for each micro-batch:  loss_sum / n_targets(global batch) · W  → backward   (DDP averages over ranks)
    clip ‖g‖ ≤ 1;  lr = schedule(step);  AdamW step

Normalising every micro-batch by the target count of the whole global batch makes the gradient exactly that of the
mean loss over the global batch, whatever the split into ranks and micro-batches; that is why 2 processes under
``torchrun`` trace the same loss curve as 1 (``tests/test_train_ddp.py``).

Run it under ``torchrun --nproc-per-node N`` after ``torch.distributed.init_process_group`` (``init_distributed``):
the trainer wraps the model in ``DistributedDataParallel``; rank 0 alone shows progress, evaluates and writes
checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from minillm.train.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint, save_checkpoint
from minillm.train.evaluate import evaluate, token_losses
from minillm.train.optim import OptimConfig, autocast, clip_gradients, make_optimizer
from minillm.train.packing import IGNORE, PackedData, StreamLoader
from minillm.train.schedules import BatchRamp, LRSchedule


@dataclass(frozen=True)
class TrainConfig:
    """What a pre-training run does. ``batch`` gives the global batch (all ranks together) per stage;
    ``micro_batch_size`` the rows one forward pass holds on one rank (gradient accumulation covers the rest)."""

    steps: int
    schedule: LRSchedule
    batch: BatchRamp
    micro_batch_size: int = 8
    optim: OptimConfig = field(default_factory=OptimConfig)
    use_doc_mask: bool = True
    amp: bool = True                       # bf16 autocast, on CUDA only
    compile: bool = False                  # torch.compile the model (GPU runs)
    eval_every: int = 0                    # 0: evaluate only at the end (when validation data is given)
    eval_batches: int | None = 8
    eval_batch_size: int = 8
    checkpoint_every: int = 0              # 0: no periodic checkpoints
    keep_checkpoints: int | None = None    # keep the last k checkpoints (None: all)
    peak_flops: float | None = None        # per device, for MFU (e.g. 989e12 for a dense bf16 H100)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"TrainConfig.steps must be >= 0, got {self.steps}")
        if self.micro_batch_size < 1:
            raise ValueError(f"TrainConfig.micro_batch_size must be >= 1, got {self.micro_batch_size}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0 (0 disables it), got {getattr(self, name)}")
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise ValueError(f"TrainConfig.keep_checkpoints must be >= 1 or None (keep all), got "
                             f"{self.keep_checkpoints}")
        if self.peak_flops is not None and self.peak_flops <= 0:
            raise ValueError(f"TrainConfig.peak_flops must be positive FLOP/s or None, got {self.peak_flops}")


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (``RANK``/``WORLD_SIZE`` set); return ``(rank, world_size)``.
    Without ``torchrun`` it does nothing and returns ``(0, 1)``. Default backend: nccl on CUDA, gloo otherwise."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return dist.get_rank(), dist.get_world_size()


class Trainer:
    """Train ``model`` (a ``minillm.Llama``) on a packed stream. ``fit()`` runs to ``cfg.steps``; ``history`` holds
    one dict per step (``step, loss, lr, grad_norm, seq_len, batch_size, tokens_seen, tokens_per_s, mfu``)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, train_data: PackedData,
                 val_data: PackedData | None = None, run_dir: str | Path | None = None,
                 eval_fn: Callable[[nn.Module, int], dict] | None = None):
        self.model, self.cfg, self.val_data = model, cfg, val_data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if cfg.checkpoint_every and self.run_dir is None:
            raise ValueError("TrainConfig.checkpoint_every > 0 needs a run_dir to write checkpoints into")
        self.device = next(model.parameters()).device
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        max_len = getattr(getattr(model, "cfg", None), "max_seq_len", None)
        if max_len is not None and cfg.batch.max_seq_len > max_len:
            raise ValueError(f"the batch ramp reaches seq_len {cfg.batch.max_seq_len} but the model's max_seq_len is "
                             f"{max_len}; raise ModelConfig.max_seq_len or shorten the ramp")
        for stage in cfg.batch.stages:
            self._split(stage.batch_size)                                  # fail now, not at the ramp
        self.optimizer = make_optimizer(model, cfg.optim, lr=cfg.schedule.lr(0))
        wrapped = model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.ddp = wrapped
        self.forward_model = torch.compile(wrapped) if cfg.compile else wrapped
        self.loader = StreamLoader(train_data)
        self.eval_fn = eval_fn
        self.step, self.tokens_seen = 0, 0
        self.history: list[dict] = []
        self.evals: list[dict] = []

    # ------------------------------------------------------------------ one step
    def _split(self, batch_size: int) -> tuple[int, int]:
        """Rows per rank and micro-batches per rank for a global batch of ``batch_size`` sequences."""
        if batch_size % self.world:
            raise ValueError(f"global batch of {batch_size} sequences does not split over {self.world} ranks; "
                             f"make every BatchRamp stage's batch_size a multiple of the world size")
        local = batch_size // self.world
        micro = min(self.cfg.micro_batch_size, local)
        if local % micro:
            raise ValueError(f"{local} sequences per rank are not a multiple of micro_batch_size={micro}; "
                             f"choose a micro_batch_size that divides batch_size / world_size")
        return local, local // micro

    def train_step(self) -> dict:
        """One optimizer step on the next global batch; returns its history row."""
        start = time.perf_counter()
        stage = self.cfg.batch.at(self.tokens_seen)
        local, n_micro = self._split(stage.batch_size)
        batch = self.loader.next_batch(stage.batch_size, stage.seq_len)     # global (B, T)
        n_targets = int((batch.targets != IGNORE).sum())                    # over the global batch
        mine = batch.rows(self.rank * local, (self.rank + 1) * local).to(self.device)
        micro = local // n_micro
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.model.train()
        for i in range(n_micro):
            mb = mine.rows(i * micro, (i + 1) * micro)                      # (micro, T)
            sync = i == n_micro - 1 or not self.distributed
            ctx = self.ddp.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                with autocast(self.device, self.cfg.amp):
                    losses = token_losses(self.forward_model, mb.tokens, mb.targets,
                                          mb.doc_ids if self.cfg.use_doc_mask else None)   # (micro, T)
                    part = losses.sum()
                # DDP averages gradients over ranks; × world turns that average into the global sum
                (part * (self.world / n_targets)).backward()
            loss_sum += part.detach().double()
        if self.distributed:
            dist.all_reduce(loss_sum)
        grad_norm = clip_gradients(self.model, self.cfg.optim.grad_clip)
        lr = self.cfg.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += stage.batch_tokens
        seconds = time.perf_counter() - start
        tokens_per_s = stage.batch_tokens / seconds
        mfu = float("nan")
        model_cfg = getattr(self.model, "cfg", None)
        if self.cfg.peak_flops and model_cfg is not None:
            mfu = model_cfg.flops_per_token(stage.seq_len) * tokens_per_s / (self.cfg.peak_flops * self.world)
        row = dict(step=self.step, loss=float(loss_sum) / n_targets, lr=lr, grad_norm=grad_norm,
                   seq_len=stage.seq_len, batch_size=stage.batch_size, tokens_seen=self.tokens_seen,
                   tokens_per_s=tokens_per_s, mfu=mfu)
        self.history.append(row)
        return row

    # ------------------------------------------------------------------ the loop
    def fit(self, stop_at: int | None = None) -> list[dict]:
        """Train until ``cfg.steps`` (or ``stop_at``, to simulate an interruption); return the history."""
        end = self.cfg.steps if stop_at is None else min(stop_at, self.cfg.steps)
        bar = tqdm(total=end, initial=self.step, desc="train", disable=not self.cfg.progress or self.rank != 0)
        while self.step < end:
            row = self.train_step()
            post = {"loss": f"{row['loss']:.3f}", "tok/s": f"{row['tokens_per_s']:.0f}"}
            if not math.isnan(row["mfu"]):
                post["mfu"] = f"{row['mfu']:.1%}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)
            if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                self.run_eval()
            if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                self.save()
        bar.close()
        if self.step == self.cfg.steps and (not self.evals or self.evals[-1]["step"] != self.step):
            self.run_eval()
        return self.history

    def run_eval(self) -> dict | None:
        """Validation loss and bits per byte on rank 0 (``eval_fn(model, step)`` when given); stored in ``evals``."""
        if self.rank != 0 or (self.val_data is None and self.eval_fn is None):
            return None
        if self.eval_fn is not None:
            result = dict(self.eval_fn(self.model, self.step))
        else:
            seq_len = self.cfg.batch.at(self.tokens_seen).seq_len
            result = evaluate(self.model, self.val_data, seq_len, self.cfg.eval_batch_size, self.cfg.eval_batches,
                              self.cfg.use_doc_mask, self.cfg.amp)
        result["step"] = self.step
        self.evals.append(result)
        return result

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The JSON part of a checkpoint (weights, optimizer and RNG states are saved beside it)."""
        return {"step": self.step, "tokens_seen": self.tokens_seen, "loader": self.loader.state_dict(),
                "history": _jsonable(self.history), "evals": _jsonable(self.evals), "world_size": self.world,
                "config": _jsonable(asdict(self.cfg))}

    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint (rank 0; default ``run_dir/step_NNNNNN``), prune old ones; all ranks wait for it."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("Trainer.save() needs a path, or a run_dir given to the Trainer")
            path = checkpoint_dir(self.run_dir, self.step)
        path = Path(path)
        if self.rank == 0:
            save_checkpoint(path, self.model, self.optimizer, self.state_dict())
            if self.run_dir is not None and self.cfg.keep_checkpoints is not None:
                # by step number, never the one just written (it may be older than one kept from an earlier run)
                others = [p for p in list_checkpoints(self.run_dir) if p.resolve() != path.resolve()]
                for old in others[:max(0, len(others) - (self.cfg.keep_checkpoints - 1))]:
                    shutil.rmtree(old)
        if self.distributed:
            dist.barrier()
        return path

    def load(self, path: str | Path) -> dict:
        """Restore weights, optimizer, RNG, step, tokens seen and data position from a checkpoint (every rank)."""
        meta = load_checkpoint(path, self.model, self.optimizer)
        self.step, self.tokens_seen = int(meta["step"]), int(meta["tokens_seen"])
        self.loader.load_state_dict(meta["loader"])
        self.history, self.evals = list(meta.get("history", [])), list(meta.get("evals", []))
        return meta


def _jsonable(value):
    """Dataclass dicts with tuples → lists, non-finite floats → None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
