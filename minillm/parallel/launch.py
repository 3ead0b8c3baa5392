"""Starting a distributed run with ``torchrun``, from a notebook or a test, bounded in time, with results as JSON.

``torchrun`` (``python -m torch.distributed.run``) starts ``--nproc-per-node`` copies of a script, gives each its
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``, and watches them: when one exits with an
error it terminates the others and exits non-zero. ``torchrun(...)`` below runs it as a subprocess and collects what
each rank's ``worker(main)`` wrote (``rank{r}.json``).

Never hang. A run can fail three ways, and each ends with a ``DistributedRunError`` in bounded time:

- a rank **dies** (crash, OOM kill): its peers' next send/recv fails or torchrun notices the exit, terminates
  the rest, and the error names the rank and its exit code;
- a rank **stalls** (deadlock, stuck I/O): every collective and point-to-point receive of its peers gives up after
  the process group's ``timeout`` (``init_process_group(timeout=...)``, our ``LaunchConfig.comm_timeout_s``) and
  raises; ``CommGroup.recv``'s error says who waited for whom, a plain collective's only that it timed out (none of
  our code calls ``dist.monitored_barrier``, gloo's barrier that names the missing rank: a script that wants that
  name calls it itself);
- everything stalls outside communication: ``LaunchConfig.timeout_s`` bounds the whole run; on expiry torchrun and
  every worker are killed (workers run in their own sessions, so we kill them by pid, and each worker also exits
  on its own if its torchrun parent disappears).

Never orphan. torchrun runs in its own session, so a Ctrl-C or a notebook's interrupt button reaches only the
launching process: ``torchrun(...)`` catches the ``KeyboardInterrupt`` (or any other exception while it waits),
stops torchrun and every worker (SIGTERM, then SIGKILL) and re-raises it.

Backend by device: NCCL on CUDA (one GPU per local rank), gloo on the CPU.

Multi-node. On a cluster the same script runs under one ``torchrun`` per machine. With a fixed head node:

    torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0 --master-addr HEAD --master-port 29500 script.py   # node 0
    torchrun --nnodes 2 --nproc-per-node 8 --node-rank 1 --master-addr HEAD --master-port 29500 script.py   # node 1

or with dynamic rendezvous (node ranks assigned on arrival, ``--nnodes MIN:MAX`` for elastic jobs):

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HEAD:29500 --rdzv-id JOB script.py

``HEAD`` is any address every node can reach; pick the network interface with ``NCCL_SOCKET_IFNAME`` /
``GLOO_SOCKET_IFNAME``. This layout (2 nodes × 8 GPUs, TP inside a node, PP across) is the report's 405B inference
setup (§6.1). Pass such flags as ``LaunchConfig.rdzv``; the default ``("--standalone",)`` is one machine.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist

RESULTS_ENV, TIMEOUT_ENV = "MINILLM_RESULTS_DIR", "MINILLM_COMM_TIMEOUT_S"
SHARE_GPUS_ENV = "MINILLM_SHARE_GPUS"   # "1": more NCCL ranks than GPUs share them round-robin (for experiments)


@dataclass(frozen=True)
class LaunchConfig:
    """How ``torchrun`` starts a run: ``nproc`` ranks, ``timeout_s`` for the whole run, ``comm_timeout_s`` for any
    single collective or receive, ``threads_per_rank`` intra-op threads each (``OMP_NUM_THREADS``)."""

    nproc: int = 2
    timeout_s: float = 300.0
    comm_timeout_s: float = 60.0
    threads_per_rank: int = 1
    backend: str | None = None                          # None: nccl on CUDA, gloo otherwise
    rdzv: tuple[str, ...] = ("--standalone",)

    def __post_init__(self) -> None:
        if not isinstance(self.nproc, int) or self.nproc < 1:
            raise ValueError(f"LaunchConfig.nproc must be a positive integer (ranks on this node), got {self.nproc!r}")
        for name in ("timeout_s", "comm_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LaunchConfig.{name} must be positive seconds, got {getattr(self, name)}")
        if self.comm_timeout_s >= self.timeout_s:
            raise ValueError(f"LaunchConfig.comm_timeout_s ({self.comm_timeout_s}) must be below timeout_s "
                             f"({self.timeout_s}) so that a stalled peer is reported before the run is killed")
        if not isinstance(self.threads_per_rank, int) or self.threads_per_rank < 1:
            raise ValueError(f"LaunchConfig.threads_per_rank must be a positive integer, got {self.threads_per_rank!r}")
        if self.backend not in (None, "gloo", "nccl"):
            raise ValueError(f"LaunchConfig.backend must be None (by device), 'gloo' or 'nccl', got {self.backend!r}")


class DistributedRunError(RuntimeError):
    """A launched run failed or timed out; the message says which rank, how, and ends with the run's last output."""


@dataclass
class RunResult:
    """What each rank's ``main`` returned (``ranks[r]``), where the run wrote its files, and how long it took."""

    ranks: list[dict]
    out_dir: Path
    seconds: float
    log: str = field(repr=False, default="")


def temporary_dir(prefix: str) -> Path:
    """A new temporary folder, removed when this Python process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def pick_backend() -> str:
    """``nccl`` when CUDA is available, else ``gloo``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(comm_timeout_s: float | None = None, backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes; return ``(rank, world_size, device)``. The timeout defaults to the
    launcher's ``comm_timeout_s`` (passed in the environment), else 60 s."""
    if comm_timeout_s is None:
        comm_timeout_s = float(os.environ.get(TIMEOUT_ENV, 60))
    backend = backend or os.environ.get("MINILLM_BACKEND") or pick_backend()
    device = torch.device("cpu")
    if backend == "nccl":
        local, gpus = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
        if gpus == 0:
            raise ValueError("backend 'nccl' needs CUDA devices and this process sees none; use backend='gloo'")
        if local >= gpus and os.environ.get(SHARE_GPUS_ENV) != "1":
            raise ValueError(f"backend 'nccl' needs one GPU per rank, but local rank {local} sees {gpus} CUDA "
                             f"device(s): launch at most {gpus} ranks per node, or use backend='gloo'")
        device = torch.device("cuda", local % gpus)     # sharing (SHARE_GPUS_ENV=1): NCCL itself may refuse it
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=comm_timeout_s))
    _exit_with_parent()
    return dist.get_rank(), dist.get_world_size(), device


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """Exit this worker if its parent (the torchrun agent) goes away, instead of lingering as an orphan."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def worker(main: Callable[[], dict]) -> None:
    """The body of a launched script: join the group, run ``main()`` and write its JSON-able result as
    ``rank{r}.json`` (on error: ``rank{r}.error.json`` with the exception, then re-raise so the process fails)."""
    out = Path(os.environ.get(RESULTS_ENV, "."))
    rank = int(os.environ.get("RANK", 0))
    try:
        init_distributed()
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
        result = main()
        (out / f"rank{rank}.json").write_text(json.dumps(result))
    except BaseException as err:
        (out / f"rank{rank}.error.json").write_text(json.dumps(
            {"type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()}))
        raise
    dist.destroy_process_group()


def torchrun(target: str | Path, args: Sequence[str] = (), cfg: LaunchConfig = LaunchConfig(),
             out_dir: str | Path | None = None, env: dict | None = None) -> RunResult:
    """Run ``target`` (a ``.py`` script, or a module name for ``python -m``) under ``torchrun`` with ``args``; return
    every rank's result. Raises ``DistributedRunError`` if a rank fails or the run exceeds ``cfg.timeout_s``.

    ``out_dir`` (default: a temporary folder removed when this process exits) receives ``rank{r}.json`` and the
    run's output ``torchrun.log``."""
    out = Path(out_dir) if out_dir is not None else temporary_dir("minillm-torchrun-")
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("rank*.json")):
        old.unlink()
    target = str(target)
    entry = [target] if target.endswith(".py") else ["-m", target]
    cmd = [sys.executable, "-m", "torch.distributed.run", *cfg.rdzv, "--nproc-per-node", str(cfg.nproc),
           "--max-restarts", "0", "--monitor-interval", "0.2", *entry, *map(str, args)]
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    child_env.update(OMP_NUM_THREADS=str(cfg.threads_per_rank), PYTHONUNBUFFERED="1",
                     **{RESULTS_ENV: str(out), TIMEOUT_ENV: str(cfg.comm_timeout_s)}, **(env or {}))
    if cfg.backend is not None:
        child_env["MINILLM_BACKEND"] = cfg.backend
    log_path = out / "torchrun.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env, start_new_session=True)
        try:
            rc = proc.wait(timeout=cfg.timeout_s)
        except BaseException as err:
            killed = _kill_tree(proc)                   # KeyboardInterrupt (the interrupt button) included
            if not isinstance(err, subprocess.TimeoutExpired):
                raise
            seconds = time.perf_counter() - start
            missing = [r for r in range(cfg.nproc) if not (out / f"rank{r}.json").exists()]
            raise DistributedRunError(
                f"{target} ({cfg.nproc} ranks) did not finish within LaunchConfig.timeout_s={cfg.timeout_s:g} s "
                f"(stopped after {seconds:.1f} s); ranks without a result: {missing}; killed torchrun and "
                f"{killed - 1} worker process(es).\n{_tail(log_path)}") from None
    seconds = time.perf_counter() - start
    text = log_path.read_text(errors="replace")
    missing = [r for r in range(cfg.nproc) if not (out / f"rank{r}.json").exists()]
    if rc != 0 or missing:
        raise DistributedRunError(f"{target} ({cfg.nproc} ranks) failed after {seconds:.1f} s (torchrun exit code "
                                  f"{rc}).\n{_diagnose(out, text, cfg.nproc)}\n{_tail(log_path)}")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(cfg.nproc)]
    return RunResult(ranks, out, seconds, text)


def _diagnose(out: Path, text: str, nproc: int) -> str:
    """One line per rank: the exception it reported, or its exit code from torchrun's summary."""
    summary = r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)"     # torchrun's failure table
    exits = {int(r): int(c) for r, c in re.findall(summary, text)}
    lines = []
    for r in range(nproc):
        err = out / f"rank{r}.error.json"
        if err.exists():
            e = json.loads(err.read_text())
            lines.append(f"  rank {r}: {e['type']}: {e['message'][:400]}")
        elif r in exits:
            code = exits[r]
            how = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
            lines.append(f"  rank {r}: {how} without reporting an error"
                         + (" (stopped by torchrun after another rank failed)" if code == -signal.SIGTERM else ""))
        elif not (out / f"rank{r}.json").exists():
            lines.append(f"  rank {r}: no result")
    return "\n".join(lines)


def _tail(path: Path, n: int = 12) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "last lines of the output:\n" + "\n".join(lines[-n:])


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_tree(proc: subprocess.Popen) -> int:
    """SIGTERM torchrun, its process group and its workers (each in its own session, so signalled by pid), SIGKILL
    what is left after 3 s; returns the number of processes signalled."""
    victims = [proc.pid, *_descendants(proc.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for kill, pid in [(os.killpg, proc.pid), *((os.kill, p) for p in victims)]:
            try:
                kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        victims += [p for p in _descendants(proc.pid) if p not in victims]
        if sig == signal.SIGTERM:
            time.sleep(0.2)
    return len(victims)
