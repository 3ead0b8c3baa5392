"""The distributed runs the book chapter and ``benchmarks/pipeline.py`` launch (``launch(...)``, which runs
``torchrun ... -m minillm.parallel.jobs SPEC.json``). Every rank builds the same model (``spec["init"]``: a saved
state dict, else ``spec["seed"]``), on its GPU under NCCL, and runs each job of ``spec["jobs"]`` in order; rank
results are JSON (``launch.worker``), tensors go to ``.pt`` files in the results folder.

Jobs (``{"name": ..., options}``; ``"model": {fields}`` in a job replaces those fields of the model, seeded):

- ``data_parallel``: gradients of a batch split over the ranks, by hand (``allreduce_gradients``) and by DDP;
- ``tensor_parallel``: the model sharded over all ranks: logits, bytes all-reduced forward and backward;
- ``gpipe``: GPipe training steps with ``K = world`` stages for each ``M`` in ``micro``: timelines and bubble
  (``op_s_per_sequence`` > 0 gives each F at least that many seconds per sequence of the micro-batch, B twice that:
  one simulated device per stage, see ``GPipe``);
- ``inference``: micro-batched greedy generation through ``K = world`` stages for each ``(batch, M)``
  (``cost: [a, b]`` makes each stage call last at least ``a + b · tokens`` seconds: one simulated device per
  stage, see ``StageCost``);
- ``stall``: rank ``rank`` stops responding (to see what a stalled rank looks like from the launcher).

``"key"`` names a job's entry in the results (default: its name), so one launch can run a job twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from minillm.config import ModelConfig
from minillm.model.llama import Llama
from minillm.parallel.communications import CommGroup
from minillm.parallel.data_parallel import allreduce_gradients, ddp, shard_batch
from minillm.parallel.launch import RESULTS_ENV, LaunchConfig, RunResult, temporary_dir, torchrun, worker
from minillm.parallel.pipeline_inference import PipelineInferenceConfig, StageCost, pipelined_generate
from minillm.parallel.pipeline_parallel import GPipe, PipelineConfig, build_stage, lm_loss
from minillm.parallel.tensor_parallel import shard_llama
from minillm.parallel.timeline import bubble_fraction

JOB_DEVICE_ENV = "MINILLM_JOB_DEVICE"


def batch(cfg: ModelConfig, batch_size: int, seq_len: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``tokens, targets (batch_size, seq_len)`` (targets = tokens shifted by one), the same on every rank."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1), generator=g)
    return data[:, :-1], data[:, 1:]


def _device(model: Llama) -> torch.device:
    return next(model.parameters()).device


def _gather(obj) -> list:
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def data_parallel(model: Llama, job: dict, out: Path) -> dict:
    world = CommGroup.world()
    tokens, targets = batch(model.cfg, job["batch"], job["seq_len"], job.get("seed", 1))
    dev = _device(model)
    mine = shard_batch(tokens, world.rank, world.size).to(dev), shard_batch(targets, world.rank, world.size).to(dev)
    lm_loss(model(mine[0]), mine[1]).backward()
    calls = allreduce_gradients(model, world)
    manual = {n: p.grad.cpu() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    wrapped = ddp(model)
    lm_loss(wrapped(mine[0]), mine[1]).backward()
    diff = max((p.grad.cpu() - manual[n]).abs().max().item() for n, p in model.named_parameters())
    if world.rank == 0:
        torch.save(manual, out / "dp_grads.pt")
    return {"allreduce_calls": calls, "max_diff_vs_ddp": diff, "grad_bytes": world.log.bytes()}


def tensor_parallel(model: Llama, job: dict, out: Path) -> dict:
    tp = CommGroup.world()
    sharded = shard_llama(model, tp)
    tokens, targets = batch(model.cfg, job["batch"], job["seq_len"], job.get("seed", 1))
    tokens, targets = tokens.to(_device(model)), targets.to(_device(model))
    logits = sharded(tokens)                                               # (B, T, vocab)
    forward = tp.log.bytes("all_reduce"), tp.log.counts().get("all_reduce", 0)
    tp.log.clear()
    lm_loss(logits, targets).backward()
    backward = tp.log.bytes("all_reduce"), tp.log.counts().get("all_reduce", 0)
    if tp.rank == 0:
        torch.save(logits.detach().cpu(), out / "tp_logits.pt")
    n_params = sum(p.numel() for p in sharded.parameters())
    return {"forward_bytes": forward[0], "forward_calls": forward[1], "backward_bytes": backward[0],
            "backward_calls": backward[1], "params_on_rank": n_params}


def gpipe(model: Llama, job: dict, out: Path) -> dict:
    pp = CommGroup.world()
    K = pp.size
    stage = build_stage(model, pp.rank, K)
    tokens, targets = batch(model.cfg, job["batch"], job["seq_len"], job.get("seed", 1))
    result = {}
    for M in job["micro"]:
        # a simulated device time proportional to the micro-batch's size (0: time the real computation)
        min_op_s = job.get("op_s_per_sequence", 0.0) * job["batch"] / M
        pipe = GPipe(stage, PipelineConfig(K, M), pp, model.cfg.dim, device=_device(model), min_op_s=min_op_s)
        runs = []
        for _ in range(job.get("warmup", 1) + job.get("repeats", 1)):
            pipe.events.clear()
            stage.zero_grad(set_to_none=True)
            dist.barrier()
            loss = pipe.run(tokens if pp.rank == 0 else None, targets if pp.rank == K - 1 else None,
                            tokens.shape)
            events = [e for rank_events in _gather(pipe.events) for e in rank_events]
            runs.append({"events": [e.to_dict() for e in events], "bubble": bubble_fraction(events, K),
                         "loss": loss})
        result[str(M)] = runs[job.get("warmup", 1):]
    return result


def inference(model: Llama, job: dict, out: Path) -> dict:
    pp = CommGroup.world()
    K = pp.size
    stage = build_stage(model.eval(), pp.rank, K)
    cost = StageCost(*job["cost"]) if job.get("cost") else None
    rows = []
    for B, M in job["runs"]:
        prompts, _ = batch(model.cfg, B, job["prompt_len"], job.get("seed", 1))
        cfg = PipelineInferenceConfig(M, job["new_tokens"])
        summaries = []
        for _ in range(job.get("warmup", 1) + job.get("repeats", 1)):
            tokens, timing, events = pipelined_generate(stage, pp, cfg, prompts if pp.rank == 0 else None,
                                                        tuple(prompts.shape), device=_device(model), cost=cost)
            summaries.append(_gather(timing.summary() if timing is not None else None)[K - 1])
        summaries = summaries[job.get("warmup", 1):]
        row = {"batch": B, "micro": M, **{k: statistics.median(s[k] for s in summaries) for k in summaries[0]}}
        if job.get("keep_events"):
            row["events"] = [e.to_dict() for rank_events in _gather(events) for e in rank_events]
        if pp.rank == K - 1:
            torch.save(tokens.cpu(), out / f"tokens_b{B}_m{M}.pt")
        rows.append(row)
    return {"runs": rows}


def launch(model_cfg: ModelConfig, jobs: list[dict], cfg: LaunchConfig, state_dict: dict | None = None,
           seed: int = 0, out_dir: str | Path | None = None) -> RunResult:
    """Run ``jobs`` under ``torchrun`` on ``cfg.nproc`` ranks, every rank building ``Llama(model_cfg)`` with
    ``state_dict`` (else seeded with ``seed``); returns the ``RunResult`` (the ``.pt`` files are in ``out_dir``, by
    default a temporary folder removed when this process exits)."""
    out = Path(out_dir) if out_dir is not None else temporary_dir("minillm-jobs-")
    out.mkdir(parents=True, exist_ok=True)
    spec = {"model": dataclasses.asdict(model_cfg), "jobs": jobs, "seed": seed}
    if state_dict is not None:
        torch.save(state_dict, out / "init.pt")
        spec["init"] = str(out / "init.pt")
    (out / "spec.json").write_text(json.dumps(spec))
    return torchrun("minillm.parallel.jobs", [str(out / "spec.json")], cfg, out_dir=out)


def stall(model: Llama, job: dict, out: Path) -> dict:
    """Fault injection: rank ``job["rank"]`` sleeps instead of sending; its neighbour waits for it and times out."""
    pp = CommGroup.world()
    if pp.rank == job["rank"]:
        time.sleep(job.get("seconds", 600))
    elif pp.rank == job["rank"] + 1:
        pp.recv((1,), torch.float32, _device(model), job["rank"], "activations of micro-batch 0")
    return {}


JOBS = {"data_parallel": data_parallel, "tensor_parallel": tensor_parallel, "gpipe": gpipe, "inference": inference,
        "stall": stall}


def main() -> dict:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(os.environ.get(RESULTS_ENV, "."))
    results = {}
    for job in spec["jobs"]:
        torch.manual_seed(spec.get("seed", 0))
        model = Llama(ModelConfig(**spec["model"]).replace(**job.get("model", {})))   # a job may change the model
        if "init" in spec and "model" not in job:
            model.load_state_dict(torch.load(spec["init"]))
        # NCCL talks between GPUs only; gloo moves CUDA tensors for some collectives (JOB_DEVICE_ENV=cuda to try)
        if dist.get_backend() == "nccl" or os.environ.get(JOB_DEVICE_ENV) == "cuda":
            model.to(torch.device("cuda", torch.cuda.current_device()))
        results[job.get("key", job["name"])] = JOBS[job["name"]](model, job, out)
    return results


if __name__ == "__main__":
    worker(main)
