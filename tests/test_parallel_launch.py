"""The torchrun launcher (``minillm.parallel.launch``) and the multi-process runs every ``test_parallel_*`` file checks.

Starting processes costs seconds (each imports torch), so one launch per world size runs every check: ``suite(2)``
(data, tensor and 2-stage pipeline parallelism, PyTorch's ``ScheduleGPipe``, pipelined inference) and ``suite(4)``
(4 stages). The test process writes the model and the batch, the workers save what they computed, and the tests
compare it with one process running the whole model (fp32, 1e-5).

Run as a script, this file is the worker: ``suite OUT`` or a failure mode (``die``, ``stall``).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.parallel import DistributedRunError, LaunchConfig, torchrun

CFG = ModelConfig.tiny(dim=32, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=64, max_seq_len=32)
BATCH, SEQ = 8, 8                       # GPipe: M in (1, 4, 8) micro-batches of 8, 2 and 1 sequences
MICRO = (1, 4, 8)
PROMPT, NEW = 6, 5                      # pipelined inference
COST = (0.01, 0.001)                    # a simulated stage call: 10 ms + 1 ms per token
TOL = dict(rtol=1e-5, atol=1e-5)
LR = 1e-3                               # AdamW steps in the weight checks


def reference_model() -> Llama:
    torch.manual_seed(0)
    return Llama(CFG)


def reference_batch(batch: int = BATCH, seq: int = SEQ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, CFG.vocab_size, (batch, seq + 1), generator=g)
    return data[:, :-1], data[:, 1:]


@functools.lru_cache(maxsize=None)
def suite(world: int) -> tuple[list[dict], dict[int, dict]]:
    """Launch the checks on ``world`` ranks once per test session; returns (JSON per rank, tensors per rank)."""
    out = Path(tempfile.mkdtemp(prefix=f"minillm-parallel-{world}-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    torch.save({"state": reference_model().state_dict(), "batch": reference_batch()}, out / "inputs.pt")
    result = torchrun(__file__, ["suite", str(out)], LaunchConfig(nproc=world, timeout_s=240, comm_timeout_s=60),
                      out_dir=out)
    tensors = {r: torch.load(out / f"rank{r}.pt") for r in range(world)}
    return result.ranks, tensors


# ----------------------------------------------------------------------------------------------- the worker side
def _worker_suite(out: Path) -> dict:
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    from minillm.parallel import (CommGroup, GPipe, PipelineConfig, PipelineInferenceConfig, StageCost,
                                  allreduce_gradients, build_stage, ddp, lm_loss, pipelined_generate, shard_batch,
                                  shard_llama)

    inputs = torch.load(out / "inputs.pt")
    tokens, targets = inputs["batch"]
    world = CommGroup.world()
    rank, W = world.rank, world.size
    saved: dict = {}

    def fresh() -> Llama:
        model = Llama(CFG)
        model.load_state_dict(inputs["state"])
        return model

    def grads(model) -> dict:
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    # data parallel: the hand-written all-reduce, DDP, and two AdamW steps with the hand-written one
    model = fresh()
    mine = shard_batch(tokens, rank, W), shard_batch(targets, rank, W)
    lm_loss(model(mine[0]), mine[1]).backward()
    allreduce_gradients(model, world)
    saved["dp_manual"] = grads(model)
    model.zero_grad(set_to_none=True)
    wrapped = ddp(model)                                 # keep a reference: DDP's hooks live as long as it does
    lm_loss(wrapped(mine[0]), mine[1]).backward()
    saved["dp_ddp"] = grads(model)
    model = fresh()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        lm_loss(model(mine[0]), mine[1]).backward()
        allreduce_gradients(model, world)
        opt.step()
    saved["dp_weights"] = {n: p.detach().clone() for n, p in model.state_dict().items()}

    # tensor parallel (2 ranks: 2 query heads, 1 KV head and half the FFN units each)
    if W == 2:
        tp = CommGroup.world()
        sharded = shard_llama(fresh(), tp)
        logits = sharded(tokens)
        lm_loss(logits, targets).backward()
        saved["tp_logits"] = logits.detach()
        saved["tp_grads"] = grads(sharded)
        saved["tp_heads"] = (sharded.layers[0].attention.n_heads, sharded.layers[0].attention.n_kv_heads)
        saved["tp_bytes"] = tp.log.bytes("all_reduce")

    # GPipe, ours: grads of every M; one AdamW step with M = 4
    for M in MICRO:
        model = fresh()
        stage = build_stage(model, rank, W)
        pipe = GPipe(stage, PipelineConfig(W, M), world, CFG.dim)
        loss = pipe.run(tokens if rank == 0 else None, targets if rank == W - 1 else None, tokens.shape)
        saved[f"gpipe_{M}"] = {"grads": grads(model), "loss": loss,
                               "events": [(e.kind, e.micro) for e in pipe.events]}
    model = fresh()
    stage = build_stage(model, rank, W)
    pipe = GPipe(stage, PipelineConfig(W, 4), world, CFG.dim)
    pipe.train_step(torch.optim.AdamW(stage.parameters(), lr=LR), tokens if rank == 0 else None,
                    targets if rank == W - 1 else None, tokens.shape)
    mine_ids = {id(p) for p in stage.parameters()}
    saved["gpipe_step"] = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in mine_ids}

    # PyTorch's GPipe on the same split
    for M in (4, 8):
        model = fresh()
        stage = build_stage(model, rank, W)
        schedule = ScheduleGPipe(PipelineStage(stage, rank, W, torch.device("cpu")), M, loss_fn=lm_loss)
        losses: list = []
        if rank == 0:
            schedule.step(tokens)
        elif rank == W - 1:
            schedule.step(target=targets, losses=losses)
        else:
            schedule.step()
        saved[f"torch_gpipe_{M}"] = {"grads": grads(model),
                                     "loss": sum(x.item() for x in losses) / M if losses else None}

    # micro-batched inference
    model = fresh().eval()
    stage = build_stage(model, rank, W)
    prompts = reference_batch(4, PROMPT)[0]
    for M in (1, 2, 4):
        out_tokens, timing, events = pipelined_generate(stage, world, PipelineInferenceConfig(M, NEW),
                                                        prompts if rank == 0 else None, tuple(prompts.shape))
        saved[f"infer_{M}"] = {"tokens": out_tokens, "steps": sorted({(e.step, e.micro) for e in events})}
    # the same with one simulated device per stage (each call lasts at least COST.seconds(tokens))
    out_tokens, timing, events = pipelined_generate(stage, world, PipelineInferenceConfig(2, NEW),
                                                    prompts if rank == 0 else None, tuple(prompts.shape),
                                                    cost=StageCost(*COST))
    saved["infer_cost"] = {"tokens": out_tokens, "token_at": timing.token_at if timing else None,
                           "events": [(e.step, e.micro, e.seconds) for e in events]}
    torch.save(saved, out / f"rank{rank}.pt")
    dist.barrier()
    return {"rank": rank, "world": W}


def _worker_failure(mode: str, out: Path) -> dict:
    from minillm.parallel import CommGroup

    world = CommGroup.world()
    (out / f"pid{world.rank}").write_text(str(os.getpid()))
    if world.rank == 1:
        if mode == "die":
            os._exit(3)                                  # a crash: no error report, exit code 3
        time.sleep(600)                                  # "stall": alive but never sends
    world.recv((4,), torch.float32, "cpu", 1, "the activations of micro-batch 0")
    return {}


# ----------------------------------------------------------------------------------------------- launcher tests
def _launch_failure(mode: str, cfg: LaunchConfig, tmp_path: Path) -> tuple[str, float]:
    start = time.perf_counter()
    with pytest.raises(DistributedRunError) as info:
        torchrun(__file__, [mode, str(tmp_path)], cfg, out_dir=tmp_path)
    return str(info.value), time.perf_counter() - start


def test_a_dead_rank_ends_the_run_with_an_error_naming_it(tmp_path):
    message, seconds = _launch_failure("die", LaunchConfig(nproc=2, timeout_s=120, comm_timeout_s=30), tmp_path)
    assert "rank 1: exited with code 3" in message, message
    assert seconds < 100                                 # ended by the failure, well before the run's timeout


def test_a_stalled_rank_makes_its_peer_time_out_with_a_clear_error(tmp_path):
    message, seconds = _launch_failure("stall", LaunchConfig(nproc=2, timeout_s=120, comm_timeout_s=3), tmp_path)
    assert "rank 0: RuntimeError: rank 0 gave up waiting for the activations of micro-batch 0 from rank 1" in message
    assert "rank 1: killed by SIGTERM" in message, message
    assert seconds < 100


HANG = """import os, sys, time
open(os.path.join(sys.argv[1], "pid" + os.environ["RANK"]), "w").write(str(os.getpid()))
time.sleep(600)
"""


def test_a_run_that_hangs_everywhere_is_killed_at_the_launch_timeout(tmp_path):
    script = tmp_path / "hang.py"                        # no torch import: the workers start at once
    script.write_text(HANG)
    start = time.perf_counter()
    with pytest.raises(DistributedRunError, match=r"did not finish within LaunchConfig.timeout_s=12 s"):
        torchrun(script, [str(tmp_path)], LaunchConfig(nproc=2, timeout_s=12, comm_timeout_s=5), out_dir=tmp_path)
    assert time.perf_counter() - start < 30
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "worker processes survived the launcher's kill"


INTERRUPTED = """import sys
from minillm.parallel import LaunchConfig, torchrun
torchrun(sys.argv[1], [sys.argv[2]], LaunchConfig(nproc=2, timeout_s=300, comm_timeout_s=5), out_dir=sys.argv[2])
"""


def _deliverable_sigint() -> None:
    """The launcher gets Python's usual Ctrl-C whatever this test inherited: a shell without job control starts
    background commands with SIGINT ignored, and an ignored (or blocked) SIGINT would never reach the launcher."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_an_interrupted_launch_stops_torchrun_and_its_workers_and_reraises(tmp_path):
    from minillm.parallel.launch import _descendants

    script = tmp_path / "hang.py"
    script.write_text(HANG)
    launcher = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(script), str(tmp_path)],
                                stderr=subprocess.PIPE, text=True, preexec_fn=_deliverable_sigint)
    tree: list[int] = []
    try:
        deadline = time.time() + 90                      # the launcher imports torch, then both ranks start
        while time.time() < deadline and not all((tmp_path / f"pid{r}").exists() for r in range(2)):
            assert launcher.poll() is None, launcher.communicate()[1]
            time.sleep(0.2)
        time.sleep(0.5)                                  # both pid files written in full
        tree = sorted({*_descendants(launcher.pid), *(int((tmp_path / f"pid{r}").read_text()) for r in range(2))})
        assert len(set(tree)) >= 3                       # torchrun and its two workers
        launcher.send_signal(signal.SIGINT)              # what a notebook's interrupt button sends the kernel
        _, err = launcher.communicate(timeout=120)    # generous: CI runs chapters beside it
        assert "KeyboardInterrupt" in err, err           # re-raised to the caller
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.1)
        assert not [p for p in tree if _alive(p)], "torchrun or a worker outlived the interrupted launch"
    finally:                                             # never leave this test's processes behind, fix or no fix
        for pid in [launcher.pid, *tree]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        launcher.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_launch_config_rejects_a_comm_timeout_longer_than_the_run():
    with pytest.raises(ValueError, match="comm_timeout_s"):
        LaunchConfig(timeout_s=10, comm_timeout_s=20)
    with pytest.raises(ValueError, match="LaunchConfig.nproc"):
        LaunchConfig(nproc=0)


def test_every_rank_of_the_suite_reports_its_result():
    ranks, _ = suite(2)
    assert ranks == [{"rank": 0, "world": 2}, {"rank": 1, "world": 2}]


if __name__ == "__main__":
    from minillm.parallel import worker

    mode, out_dir = sys.argv[1], Path(sys.argv[2])
    worker(lambda: _worker_suite(out_dir) if mode == "suite" else _worker_failure(mode, out_dir))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gives")
def test_nccl_without_a_gpu_says_to_use_gloo():
    from minillm.parallel.launch import init_distributed

    with pytest.raises(ValueError, match="use backend='gloo'"):
        init_distributed(backend="nccl")
