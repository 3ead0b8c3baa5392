"""CPU decode kernels, one by one: which linear kernel reads a decode step's weights fastest, and what RoPE costs.

A CPU decode step of SmolLM2-135M (fp32) is mostly reading weights. ``minillm.model.linear.Linear`` calls oneDNN's
inner product where ``F.linear`` calls MKL's sgemm; this script times both, plus MKL's *packed* sgemm (the kernel
inductor's CPU freezing pass uses for fp32 linears: ``torch.ops.mkl._mkl_reorder_linear_weight`` once, then
``_mkl_linear``), at each projection shape of SmolLM2-135M and batch 1 and 8, and on an 8×8 matrix (what a call
costs with nothing to read). Each shape cycles through 30 different matrices (one per layer), so the weights come
from memory as in a real step, not from cache.

It also times the rotation of q and k for one layer: ``apply_rope`` (about 6 ops per tensor) against
``addcmul(x·cos, roll(x, d/2), sin with its first half negated)`` (3 ops).

    python benchmarks/cpu_linear.py --out benchmarks/out/cpu_linear.json

Times are µs per call (median of ``--repeats`` half-second rounds, kernels interleaved round by round); GB/s is the
weight's bytes over that time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from minillm.model.rope import apply_rope, rope_cos_sin, rope_frequencies

SHAPES = {"wqkv": (960, 576), "wo": (576, 576), "w13": (3072, 576), "w2": (576, 1536), "lm_head": (49152, 576),
          "fixed_cost_8x8": (8, 8)}                    # no weight to read: what one call of each kernel costs


def _time(fn, args, seconds: float) -> float:
    for a in args:                                      # warm up once per matrix
        fn(*a)
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        for a in args:
            fn(*a)
            n += 1
    return (time.perf_counter() - t) / n * 1e6


def linear_kernels(rows: int, repeats: int, seconds: float) -> dict:
    out = {}
    for name, (o, i) in SHAPES.items():
        weights = [torch.randn(o, i) for _ in range(1 if name == "lm_head" else 30)]
        x = torch.randn(rows, i)
        packed = [torch.ops.mkl._mkl_reorder_linear_weight(w, rows) for w in weights]
        kernels = {
            "aten": (lambda w, p: F.linear(x, w)),
            "onednn": (lambda w, p: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")),
            "mkl_packed": (lambda w, p: torch.ops.mkl._mkl_linear(x, p, w, None, rows)),
        }
        for k, fn in kernels.items():                   # all three agree before any is timed
            torch.testing.assert_close(fn(weights[0], packed[0]), x @ weights[0].T, rtol=1e-4, atol=1e-3)
        times = {k: [] for k in kernels}
        for _ in range(repeats):
            for k, fn in kernels.items():
                times[k].append(_time(fn, list(zip(weights, packed)), seconds))
        gb = o * i * 4 / 1e9
        out[name] = {k: {"us": statistics.median(v), "GB_s": gb / (statistics.median(v) * 1e-6)}
                     for k, v in times.items()}
    return out


def rope_ops(repeats: int, seconds: float) -> dict:
    cos, sin = rope_cos_sin(torch.tensor([[37]]), rope_frequencies(64, 100_000.0), torch.float32)
    signed = torch.cat([-sin[..., :32], sin[..., 32:]], dim=-1)                 # (1, 1, 1, 64)
    q, k = torch.randn(1, 9, 1, 64), torch.randn(1, 3, 1, 64)                   # SmolLM2: 9 query, 3 KV heads

    def three_ops(x):
        return torch.addcmul(x * cos, x.roll(32, dims=-1), signed)

    torch.testing.assert_close(three_ops(q), apply_rope(q, cos, sin))
    kernels = {"apply_rope": lambda: (apply_rope(q, cos, sin), apply_rope(k, cos, sin)),
               "addcmul_roll": lambda: (three_ops(q), three_ops(k))}
    times = {name: [] for name in kernels}
    for _ in range(repeats):
        for name, fn in kernels.items():
            times[name].append(_time(fn, [()], seconds))
    return {name: {"us_per_layer": statistics.median(v)} for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--out", default="benchmarks/out/cpu_linear.json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    results = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "threads": torch.get_num_threads(),
               "linear": {f"batch_{b}": linear_kernels(b, args.repeats, args.seconds) for b in (1, 8)},
               "rope": rope_ops(args.repeats, args.seconds)}
    for batch, shapes in results["linear"].items():
        for name, r in shapes.items():
            print(batch, name, " ".join(f"{k} {v['us']:.0f} µs ({v['GB_s']:.1f} GB/s)" for k, v in r.items()))
    for name, r in results["rope"].items():
        print("rope", name, f"{r['us_per_layer']:.1f} µs per layer (q and k)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
