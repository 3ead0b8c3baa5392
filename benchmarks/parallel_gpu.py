"""``minillm.parallel`` on CUDA tensors: what runs on the GPUs a machine has, checked against one process.

Every setting launches ``minillm.parallel.jobs`` under ``torchrun`` (data parallel, tensor parallel, GPipe training
steps, pipelined greedy generation) and compares what the ranks computed with a single process on the same GPU:

- DP: the all-reduced gradients (hand-written buckets; DDP's difference from them is reported by the job);
- TP: the sharded model's logits;
- GPipe: the pipelined loss for each number of micro-batches;
- pipelined inference: the greedy tokens.

Settings (``--settings``):

- ``nccl-N``: NCCL with N ranks, one GPU each when the machine has N GPUs; with fewer GPUs the ranks share them
  round-robin (``MINILLM_SHARE_GPUS=1``), which NCCL normally refuses ("duplicate GPU"): the script records the
  error rather than failing;
- ``gloo-cuda-N``: gloo with N ranks whose models and tensors are on CUDA (gloo moves CUDA tensors for all-reduce
  and broadcast; its point-to-point send/recv of CUDA tensors is what a pipeline needs).

    python benchmarks/parallel_gpu.py --out benchmarks/out/gpu/parallel_gpu.json      # ~1-2 min on one GPU
    python benchmarks/parallel_gpu.py --settings gloo-2 --out /tmp/p.json             # CPU: the same checks, gloo

A setting that fails is recorded with its error (the run goes on); the exit code is 0 when the script completes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minillm import Llama, ModelConfig, generate  # noqa: E402
from minillm.parallel import LaunchConfig, lm_loss  # noqa: E402
from minillm.parallel.jobs import JOB_DEVICE_ENV, batch, launch  # noqa: E402
from minillm.parallel.launch import SHARE_GPUS_ENV  # noqa: E402

MODEL = dict(dim=128, n_layers=4, n_heads=8, n_kv_heads=4, ffn_dim=384, vocab_size=512, max_seq_len=64)
BATCH, SEQ, MICRO = 8, 32, [1, 4]
PROMPT, NEW = 8, 6
TOL = 1e-4                                   # fp32 on the GPU: reductions in another order, TF32 off


JOBS = {"dp": dict(name="data_parallel", batch=BATCH, seq_len=SEQ),
        "tp": dict(name="tensor_parallel", batch=BATCH, seq_len=SEQ),
        "gpipe": dict(name="gpipe", batch=BATCH, seq_len=SEQ, micro=MICRO, warmup=0, repeats=1),
        "inference": dict(name="inference", runs=[[BATCH, 2]], prompt_len=PROMPT, new_tokens=NEW, warmup=0,
                          repeats=1)}


def reference(cfg: ModelConfig, device: torch.device) -> dict:
    """One process on ``device``: full-batch gradients, logits, loss, and greedy tokens."""
    torch.manual_seed(0)                                                   # the jobs' model: spec seed 0
    model = Llama(cfg).to(device)
    tokens, targets = (t.to(device) for t in batch(cfg, BATCH, SEQ, 1))
    logits = model(tokens)
    loss = lm_loss(logits, targets)
    loss.backward()
    prompts, _ = batch(cfg, BATCH, PROMPT, 1)
    with torch.no_grad():
        new = generate(model.eval(), prompts.tolist(), NEW)
    return {"grads": {n: p.grad.detach().cpu() for n, p in model.named_parameters()},
            "logits": logits.detach().cpu(), "loss": loss.item(), "tokens": torch.tensor(new)}


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def run_setting(name: str, cfg: ModelConfig, ref: dict, kinds: list[str]) -> dict:
    backend, world = name.rsplit("-", 1)[0], int(name.rsplit("-", 1)[1])
    env_keys = (SHARE_GPUS_ENV, JOB_DEVICE_ENV)
    saved = {k: os.environ.get(k) for k in env_keys}
    gpus = torch.cuda.device_count()
    row = {"setting": name, "jobs": kinds, "ranks": world, "gpus": gpus,
           "ranks_per_gpu": world / gpus if gpus else None}
    try:
        if backend == "nccl":
            os.environ[SHARE_GPUS_ENV] = "1"
        if backend == "gloo-cuda":
            os.environ[JOB_DEVICE_ENV] = "cuda"
        launch_backend = "nccl" if backend == "nccl" else "gloo"
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="minillm-pgpu-") as tmp:
            result = launch(cfg, [JOBS[k] for k in kinds], LaunchConfig(nproc=world, timeout_s=240, comm_timeout_s=60,
                                                      backend=launch_backend), out_dir=tmp)
            out = Path(tmp)
            last, checks = result.ranks[-1], []
            row["seconds"] = time.perf_counter() - t0
            if "dp" in kinds:
                grads = torch.load(out / "dp_grads.pt", weights_only=True)
                row["dp_max_rel_err"] = max(max_rel(grads[n], g) for n, g in ref["grads"].items())
                row["dp_ddp_max_diff"] = max(r["data_parallel"]["max_diff_vs_ddp"] for r in result.ranks)
                checks.append(row["dp_max_rel_err"] < TOL)
            if "tp" in kinds:
                row["tp_max_rel_err"] = max_rel(torch.load(out / "tp_logits.pt", weights_only=True), ref["logits"])
                checks.append(row["tp_max_rel_err"] < TOL)
            if "gpipe" in kinds:
                losses = {M: last["gpipe"][str(M)][0]["loss"] for M in MICRO}
                row["gpipe_loss_abs_err"] = max(abs(v - ref["loss"]) for v in losses.values())
                row["gpipe_bubble"] = {M: last["gpipe"][str(M)][0]["bubble"] for M in MICRO}
                checks.append(row["gpipe_loss_abs_err"] < TOL)
            if "inference" in kinds:
                tokens = torch.load(out / f"tokens_b{BATCH}_m2.pt", weights_only=True)
                row["inference_tokens_equal"] = bool(torch.equal(tokens.cpu(), ref["tokens"]))
                checks.append(row["inference_tokens_equal"])
        row["ok"] = all(checks)
    except Exception as err:                                               # recorded, not fatal: see the docstring
        row["ok"] = False
        row["error"] = f"{type(err).__name__}: {err}"[-3000:]
        row["traceback_tail"] = traceback.format_exc()[-1500:]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    shown = {k: v for k, v in row.items() if k not in ("traceback_tail",)}
    print(json.dumps(shown, default=str)[:1500], flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=["nccl-1", "nccl-2", "gloo-cuda-2"])
    p.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS), help="which checks (default: all)")
    p.add_argument("--out", default="benchmarks/out/parallel_gpu.json")
    args = p.parse_args()
    cfg = ModelConfig.tiny(**MODEL)
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ref = reference(cfg, device)
    report = {"benchmark": "parallel_gpu", "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
              "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
              "nccl": ".".join(map(str, torch.cuda.nccl.version())) if device.type == "cuda" else None,
              "model": MODEL, "reference_device": str(device), "settings": []}
    for name in args.settings:
        report["settings"].append(run_setting(name, cfg, ref, args.jobs))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
