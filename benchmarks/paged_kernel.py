"""The paged decode kernel's launch configuration, measured: tile width × warps × pipeline stages (vLLM §4.1).

``minillm.infer.paged_attention_triton`` reads each sequence's keys and values through its block table. How fast it
streams them depends on the tile (``BLOCK_N`` tokens per loop step), the warps per program and how many loads Triton
keeps in flight (``num_stages``). This script times every configuration of a small grid on Llama-3-8B decode shapes
(32 query heads, 8 KV heads, head_dim 128, 16-token blocks, bf16, blocks scattered at random over the pool), checks
each against dense attention, and reports the bandwidth each reaches (the bytes of K and V it must read / time).

The best configuration over the shapes (the lowest total time) is printed as ``BEST BLOCK_N,warps,stages``; the
engine takes it through ``MINILLM_PAGED_KERNEL`` (``benchmarks/gpu.sh`` passes it on to the serving benchmark).

    python benchmarks/paged_kernel.py --out benchmarks/out/gpu/paged_kernel.json     # ~30 s on an H100
    TRITON_INTERPRET=1 python benchmarks/paged_kernel.py --smoke --out /tmp/k.json    # the code path, on a CPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minillm.infer.paged_attention_triton import kernel_config, paged_decode_attention_triton  # noqa: E402
from minillm.model.attention import attention_ref  # noqa: E402

SHAPES = [(1, 4096), (16, 4096), (64, 1024), (256, 1024)]          # (sequences, context tokens)
GRID = dict(block_n=[32, 64, 128], warps=[4, 8], stages=[2, 3, 4])
H, HKV, D, BS = 32, 8, 128, 16


def make_case(B: int, ctx: int, device, dtype, seed: int = 0):
    """A pool holding ``B`` sequences of ``ctx`` tokens in shuffled blocks, their tables, queries, and the dense
    reference output ``(B, H, D)``."""
    g = torch.Generator(device=device).manual_seed(seed)
    per_seq = -(-ctx // BS)
    perm = torch.randperm(B * per_seq, generator=g, device=device)
    tables = perm.view(B, per_seq).to(torch.int32)
    k_pool = torch.randn(B * per_seq, BS, HKV, D, generator=g, device=device).to(dtype)
    v_pool = torch.randn(B * per_seq, BS, HKV, D, generator=g, device=device).to(dtype)
    q = torch.randn(B, H, D, generator=g, device=device).to(dtype)
    k = k_pool[tables.long()].view(B, per_seq * BS, HKV, D)[:, :ctx].transpose(1, 2)     # (B, Hkv, ctx, D)
    v = v_pool[tables.long()].view(B, per_seq * BS, HKV, D)[:, :ctx].transpose(1, 2)
    ref = attention_ref(q[:, :, None].float(), k.float(), v.float())[:, :, 0]            # (B, H, D)
    lens = torch.full((B,), ctx, dtype=torch.int32, device=device)
    return q, k_pool, v_pool, tables, lens, ref


def time_call(fn, device, reps: int) -> float:
    """Median seconds of ``fn()`` (CUDA events on a GPU, wall clock elsewhere)."""
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/out/paged_kernel.json")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--smoke", action="store_true", help="tiny shapes and two configurations (CPU interpreter)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shapes = [(2, 100), (3, 300)] if args.smoke else SHAPES
    grid = dict(block_n=[32, 64], warps=[4], stages=[2]) if args.smoke else GRID
    reps = 2 if args.smoke else args.reps
    configs = list(itertools.product(grid["block_n"], grid["warps"], grid["stages"]))
    default = kernel_config()
    print(f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}: {len(configs)} configurations x "
          f"{len(shapes)} shapes; current default {default}", flush=True)
    cases = {shape: make_case(*shape, device, dtype) for shape in shapes}
    rows = []
    for cfg in configs:
        row = {"block_n": cfg[0], "warps": cfg[1], "stages": cfg[2], "shapes": {}}
        for (B, ctx), (q, kp, vp, tables, lens, ref) in cases.items():
            def call():
                return paged_decode_attention_triton(q, kp, vp, tables, lens, max_context=ctx, block_n=cfg[0],
                                                     num_warps=cfg[1], num_stages=cfg[2])
            try:
                err = (call().float() - ref).abs().max().item()
                s = time_call(call, device, reps)
                kv_bytes = 2 * B * ctx * HKV * D * kp.element_size()
                row["shapes"][f"{B}x{ctx}"] = {"us": s * 1e6, "gb_s": kv_bytes / s / 1e9, "max_abs_err": err}
            except Exception as e:                                         # a configuration Triton cannot build
                row["shapes"][f"{B}x{ctx}"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        ok = all("us" in v and v["max_abs_err"] < 0.05 for v in row["shapes"].values())
        row["total_us"] = sum(v["us"] for v in row["shapes"].values()) if ok else None
        rows.append(row)
        print(f"BLOCK_N={cfg[0]:4d} warps={cfg[1]} stages={cfg[2]}: " + "  ".join(
            f"{k} {v['us']:.1f} us {v['gb_s']:.0f} GB/s" if "us" in v else f"{k} {v['error'][:60]}"
            for k, v in row["shapes"].items()), flush=True)
    valid = [r for r in rows if r["total_us"] is not None]
    best = min(valid, key=lambda r: r["total_us"]) if valid else None
    base = next((r for r in valid if (r["block_n"], r["warps"]) == default[:2] and r["stages"] == 3), None)
    report = {"benchmark": "paged_kernel", "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "dtype": str(dtype),
              "heads": [H, HKV, D], "block_size": BS, "default": default, "rows": rows, "best": best}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    if best is not None:
        if base is not None:
            print(f"best vs BLOCK_N={default[0]}, warps={default[1]}, stages=3: total "
                  f"{best['total_us']:.0f} vs {base['total_us']:.0f} us")
        print(f"BEST {best['block_n']},{best['warps']},{best['stages']}", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
