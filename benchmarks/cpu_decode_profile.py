"""Where a CPU decode step of SmolLM2-135M goes, by operator (``torch.profiler``), for batch-1 decode work.

Runs ``minillm.generate.decode_steps`` (the path every chapter's generation takes) on SmolLM2-135M-Instruct in fp32
with a 128-token random prompt. It times 16 steps without the profiler, then profiles 8 more and reports each
operator's calls and self CPU time per step. The profiler adds its own overhead, so compare operators with each
other rather than with the unprofiled step time.

    python benchmarks/cpu_decode_profile.py --out benchmarks/out/cpu_decode_profile.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from minillm.generate import decode_steps
from minillm.model.load import load_smollm2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/out/cpu_decode_profile.json")
    args = parser.parse_args()
    model, _ = load_smollm2()
    prompt = torch.randint(100, 40_000, (128,), generator=torch.Generator().manual_seed(0)).tolist()
    steps = decode_steps(model, [prompt], 48)
    for _ in range(16):                                 # prefill and warm-up
        next(steps)
    t = time.perf_counter()
    for _ in range(16):
        next(steps)
    step_ms = (time.perf_counter() - t) / 16 * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(8):
            next(steps)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / 8 / 1e3
    rows = [{"op": e.key, "calls_per_step": e.count / 8, "self_ms_per_step": e.self_cpu_time_total / 8 / 1e3}
            for e in events[:args.top]]
    print(f"decode step {step_ms:.1f} ms (unprofiled); profiled self CPU {total:.1f} ms a step")
    for r in rows:
        print(f"{r['op']:50s} {r['calls_per_step']:6.0f} calls  {r['self_ms_per_step']:6.2f} ms")
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "step_ms": step_ms,
              "profiled_self_ms": total, "ops": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
