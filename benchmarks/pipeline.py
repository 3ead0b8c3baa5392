"""Pipeline parallelism: the GPipe bubble, measured against (K − 1)/(M + K − 1), and micro-batched pipeline inference
(report §6.1). One run, JSON out; every figure comes from ``torchrun`` jobs of ``minillm.parallel.jobs``.

1. ``bubble``: GPipe training steps with K = 4 stages (4 ranks) and M ∈ {1, 4, 8} micro-batches, two ways:
   - ``simulated``: every F lasts at least 10 ms per sequence of its micro-batch and every B twice that (the stage
     sleeps the rest; a narrow model keeps the real compute well below that), so each stage behaves like its own
     device and the total work is the same for every M; this measures the schedule and the messages, not the CPU;
   - ``compute``: the real forward/backward times. On 2 cores, 4 stages share 2 cores: when all stages are busy
     each runs at about half speed, which hides part of the bubble (read it as what this VM does, not as GPipe);
   the bubble is 1 − Σ busy / (K × span) over the recorded F/B events of one step (median of ``--repeats``).
2. ``inference``: greedy generation through K = 2 stages (the report's 405B: 2 nodes; §6.1), prompts of
   ``--prompt`` tokens and ``--new`` new tokens (the report measured 4,096 in / 256 out; we scale both by 1/16),
   local batch B ∈ ``--batches`` split into M ∈ {1, 2, 4} micro-batches: prefill and decode throughput and latency.

    python benchmarks/pipeline.py                  # ~4 min on 2 CPU cores
    python benchmarks/pipeline.py --quick          # smaller, ~1.5 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minillm import ModelConfig  # noqa: E402
from minillm.parallel import LaunchConfig, gpipe_bubble  # noqa: E402
from minillm.parallel.jobs import launch  # noqa: E402


def run_jobs(nproc: int, model: dict, jobs: list[dict], timeout_s: float) -> dict:
    """Launch ``minillm.parallel.jobs`` on ``nproc`` ranks; return the last rank's results (it holds every summary)."""
    with tempfile.TemporaryDirectory(prefix="minillm-bench-") as tmp:
        result = launch(ModelConfig(**model), jobs, LaunchConfig(nproc=nproc, timeout_s=timeout_s, comm_timeout_s=120),
                        out_dir=tmp)
    return result.ranks[-1]


def bubble(args) -> dict:
    K = 4
    out = {"n_stages": K, "batch": args.batch}
    for mode, op_s, dim, seq in (("simulated", args.op_ms / 1e3, 64, 32), ("compute", 0.0, args.dim, args.seq)):
        # simulated: a narrow model whose real compute stays far below the floor; compute: a wider one
        model = dict(dim=dim, n_layers=2 * K, n_heads=8, n_kv_heads=2, ffn_dim=3 * dim, vocab_size=2048,
                     max_seq_len=seq)
        job = dict(name="gpipe", batch=args.batch, seq_len=seq, micro=list(args.micro), warmup=1,
                   repeats=args.repeats, op_s_per_sequence=op_s)
        res = run_jobs(K, model, [job], timeout_s=600)["gpipe"]
        out[f"{mode}_model"] = {**model, "seq_len": seq}
        rows = []
        for M in args.micro:
            runs = res[str(M)]
            spans = [max(e["end"] for e in r["events"]) - min(e["start"] for e in r["events"]) for r in runs]
            rows.append({"micro": M, "bubble": statistics.median(r["bubble"] for r in runs),
                         "bubbles": [r["bubble"] for r in runs], "formula": gpipe_bubble(K, M),
                         "step_s": statistics.median(spans)})
            print(f"bubble {mode:9s} K={K} M={M}: measured {rows[-1]['bubble']:.3f} (runs "
                  f"{', '.join(f'{b:.3f}' for b in rows[-1]['bubbles'])}), formula {gpipe_bubble(K, M):.3f}, "
                  f"step {rows[-1]['step_s'] * 1e3:.0f} ms", flush=True)
        out[mode] = rows
    return out


def inference(args) -> dict:
    model = dict(dim=args.infer_dim, n_layers=8, n_heads=8, n_kv_heads=2, ffn_dim=3 * args.infer_dim,
                 vocab_size=8192, max_seq_len=args.prompt + args.new)
    runs = [[B, M] for B in args.batches for M in (1, 2, 4) if B % M == 0]
    job = dict(name="inference", runs=runs, prompt_len=args.prompt, new_tokens=args.new, warmup=1,
               repeats=args.repeats)
    rows = run_jobs(2, model, [job], timeout_s=900)["inference"]["runs"]
    for r in rows:
        print(f"inference K=2 B={r['batch']} M={r['micro']}: prefill {r['prefill_tok_s']:.0f} tok/s, "
              f"TTFT {r['prefill_latency_s'] * 1e3:.0f} ms; decode {r['decode_tok_s']:.1f} tok/s, "
              f"{r['decode_latency_s'] * 1e3:.1f} ms/token", flush=True)
    return {"n_stages": 2, "prompt": args.prompt, "new": args.new, "model": model, "runs": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).parent / "out" / "pipeline_cpu.json"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--micro", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    args.dim, args.batch, args.seq, args.op_ms = (128, 8, 64, 10.0) if args.quick else (256, 16, 128, 10.0)
    args.infer_dim, args.prompt, args.new = (256, 128, 8) if args.quick else (512, 256, 16)
    args.batches = [4, 8] if args.quick else [4, 8, 16]
    start = time.perf_counter()
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                          "torch": torch.__version__, "load_avg_start": os.getloadavg()},
              "command": " ".join(["python", *sys.argv])}
    result["bubble"] = bubble(args)
    result["inference"] = inference(args)
    result["machine"]["load_avg_end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
