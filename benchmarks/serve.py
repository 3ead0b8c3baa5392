"""Serving: paged KV memory, prefix sharing in rejection sampling, continuous-batching throughput, paged attention.

One run, JSON out (written after every section, so a timeout keeps what was measured). Sections:

1. ``attention``: decode-attention latency, paged (Triton on CUDA, PyTorch gather elsewhere; random block layout)
   vs a contiguous cache (``sdpa_attention``), one layer; vLLM saw 20-26% kernel overhead for paging.
2. ``memory``: the fraction of reserved KV memory holding computed tokens over a run with varied lengths: paged
   (blocks of 16) vs contiguous pre-allocation of ``max_seq_len`` per request and of prompt + max_tokens (vLLM §3,
   Fig. 2: 20.4% / 38.2% before paging, 96.3% with it). The metric depends only on lengths and block size, so it
   runs a tiny random model.
3. ``rejection``: K samples of L tokens from one P-token prompt (report §6.2), ``n=K`` with shared prompt blocks vs
   K separate requests without sharing, in the same pool (sized for the shared run), plus the unshared run's KV
   memory in an unbounded pool.
4. ``throughput``: nano-vllm's protocol (random token prompts, random input and output lengths, EOS ignored): the
   engine on all requests; then the engine, a static-batch loop (``minillm.generate``, one batch after another) and
   HF ``generate`` (same batches) on ``--baseline-requests`` requests whose lengths are capped at
   ``--baseline-max-len`` (GPU: 64 requests, lengths 100-256, since HF's eager decode at 1024 steps would take
   minutes). Output tok/s = useful tokens / wall time. On a GPU the engine replays CUDA graphs for pure-decode
   steps (``minillm/infer/decode_graphs.py``), captured at start-up outside the timed run (the capture time is
   recorded); the same engine with ``decode_graphs="off"`` on the baseline requests is the A/B. GPU mode skips
   what starts after ``--deadline-s`` (200 s).
5. ``profile`` (not in the default sections): where a decode step's GPU time goes. ``--profile-batch`` requests of
   ``--profile-context`` prompt tokens are prefilled; then ``torch.profiler`` records a few pure-decode steps (CUDA
   graph replays on a GPU) and sums the kernels' device time by kind: paged decode attention, GEMMs, other kernels.
   The same steps are also timed without the profiler.

    python benchmarks/serve.py                          # CPU: SmolLM2-135M, scaled-down protocol (~5 min on 2 cores)
    python benchmarks/serve.py --quick                  # CPU, smaller (~1 min)
    python benchmarks/serve.py --mode gpu               # Llama-3-8B shapes, random bf16 weights; ~3 min on an H100
    python benchmarks/serve.py --mode gpu --smoke       # the GPU code path on tiny shapes (runs on CPU)
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import hf_twin, random_model  # noqa: E402

from minillm import Llama, ModelConfig, generate  # noqa: E402
from minillm.infer import LLMEngine, SamplingParams  # noqa: E402
from minillm.infer.model_runner import ModelRunner  # noqa: E402
from minillm.infer.paged_attention import paged_decode_attention, slots_for, write_kv  # noqa: E402
from minillm.model.attention import sdpa_attention  # noqa: E402

T0 = time.perf_counter()
CAPTURE_ERRORS: list[str] = []     # decode-graph captures that failed (the run then went on without graphs)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int = 1):
    """(result of the last call, median seconds per call)."""
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return out, sorted(times)[len(times) // 2]


# ------------------------------------------------------------------------------------------------ 1. attention
def bench_attention(cfg: ModelConfig, cases, dtype, device, iters: int) -> list[dict]:
    H, Hkv, D, bs = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, 16
    rows = []
    for B, ctx in cases:
        nb = B * -(-ctx // bs)
        k_dense = torch.randn(B, Hkv, ctx, D, dtype=dtype, device=device)      # contiguous cache (B, Hkv, S, D)
        v_dense = torch.randn_like(k_dense)
        q = torch.randn(B, H, D, dtype=dtype, device=device)
        perm = torch.randperm(nb).tolist()                                      # random block layout
        tables = [perm[b * (nb // B):(b + 1) * (nb // B)] for b in range(B)]
        k_pool = torch.zeros(nb, bs, Hkv, D, dtype=dtype, device=device)
        v_pool = torch.zeros_like(k_pool)
        for b in range(B):
            slots = torch.tensor(slots_for(tables[b], 0, ctx, bs), device=device)
            write_kv(k_pool, v_pool, k_dense[b].transpose(0, 1).contiguous(), v_dense[b].transpose(0, 1).contiguous(),
                     slots)
        bt = torch.tensor(tables, dtype=torch.int32, device=device)
        lens = torch.full((B,), ctx, dtype=torch.int32, device=device)
        impl = "triton" if device.type == "cuda" else "torch"
        contiguous = lambda: sdpa_attention(q[:, :, None], k_dense, v_dense)  # noqa: E731
        paged = lambda: paged_decode_attention(q, k_pool, v_pool, bt, lens, impl, max_context=ctx)  # noqa: E731
        ref, _ = timed(contiguous, device, 3)
        out, _ = timed(paged, device, 3)
        err = (out.float() - ref[:, :, 0].float()).abs().max().item()
        _, t_c = timed(lambda: [contiguous() for _ in range(iters)], device, 3)
        _, t_p = timed(lambda: [paged() for _ in range(iters)], device, 3)
        row = {"batch": B, "context": ctx, "paged_impl": impl, "contiguous_us": 1e6 * t_c / iters,
               "paged_us": 1e6 * t_p / iters, "paged_over_contiguous": t_p / t_c, "max_abs_err": err}
        print(f"attention b={B:3d} ctx={ctx:5d}: contiguous {row['contiguous_us']:8.1f} us, paged ({impl}) "
              f"{row['paged_us']:8.1f} us ({row['paged_over_contiguous']:.2f}x), err {err:.1e}", flush=True)
        rows.append(row)
        del k_dense, v_dense, k_pool, v_pool
    return rows


# ------------------------------------------------------------------------------------------------ 2. memory
def bench_memory(device, n: int, max_len: int, seed: int = 0) -> dict:
    cfg = ModelConfig.tiny(dim=64, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=256,
                           max_seq_len=max_len)
    torch.manual_seed(seed)
    model = Llama(cfg).to(device).eval()
    rng = random.Random(seed)
    lens = [(rng.randint(8, max_len // 4), rng.randint(8, max_len // 4)) for _ in range(n)]
    engine = LLMEngine(model, block_size=16, max_num_seqs=n, max_num_batched_tokens=4096,
                       enable_prefix_caching=False)
    for p, o in lens:
        engine.add_request([rng.randrange(cfg.vocab_size) for _ in range(p)],
                           SamplingParams(temperature=0.0, max_tokens=o, ignore_eos=True))
    budget = {s.seq_id: s.prompt_len + s.params.max_tokens for s in engine.scheduler.waiting}
    held = paged = cmax = oracle = 0
    while engine.has_unfinished():
        engine.step()
        usage = engine.kv_usage()
        running = engine.scheduler.running
        held += usage["filled_slots"]
        paged += usage["reserved_slots"]
        cmax += len(running) * max_len
        oracle += sum(budget[s.seq_id] for s in running)
    out = {"requests": n, "max_seq_len": max_len, "block_size": 16, "paged_utilisation": held / paged,
           "contiguous_max_len_utilisation": held / cmax, "contiguous_exact_len_utilisation": held / oracle,
           "vllm_paper": {"paged": 0.963, "orca_max": 0.204, "orca_oracle": 0.382}}
    print(f"memory: tokens / reserved KV slots: paged {out['paged_utilisation']:.1%}, contiguous max_seq_len "
          f"{out['contiguous_max_len_utilisation']:.1%}, contiguous prompt+max_tokens "
          f"{out['contiguous_exact_len_utilisation']:.1%}", flush=True)
    return out


# ------------------------------------------------------------------------------------------------ 3. rejection
def start_engine(model, device, **engine_kw) -> tuple[LLMEngine, float | None]:
    """An engine with its decode graphs (if any) captured now, at start-up as a server would, outside the timed
    run; returns it and the capture seconds."""
    engine = LLMEngine(model, **engine_kw)
    graphs = engine.runner.graphs
    if graphs is None or not graphs.capture:
        return engine, None
    try:
        return engine, timed(graphs.capture_all, device)[1]
    except Exception as err:       # a failed capture must not cost the run: record it, go on without graphs
        print(f"decode graph capture failed ({type(err).__name__}: {err}); running with decode_graphs='off'",
              flush=True)
        CAPTURE_ERRORS.append(f"{type(err).__name__}: {err}")
        del engine, graphs
        free_cuda(device)
        return LLMEngine(model, **{**engine_kw, "decode_graphs": "off"}), None


def bench_rejection(model: Llama, P: int, K: int, L: int, device, **engine_kw) -> dict:
    bs = 16
    prompt = torch.randint(0, model.cfg.vocab_size, (P,), generator=torch.Generator().manual_seed(0)).tolist()
    params = SamplingParams(temperature=1.0, max_tokens=L, ignore_eos=True)
    pool = -(-P // bs) + K * (-(-L // bs) + 1)                  # what the shared run needs
    per_block = ModelRunner.bytes_per_block(model, bs)
    runs = {}
    for name, prompts, p, blocks, caching in (
            ("shared_n", [prompt], SamplingParams(n=K, temperature=1.0, max_tokens=L, ignore_eos=True), pool, True),
            ("separate_same_pool", [prompt] * K, params, pool, False),
            ("separate_unbounded_pool", [prompt] * K, params, K * -(-(P + L) // bs), False)):
        engine, _ = start_engine(model, device, num_blocks=blocks, block_size=bs, max_num_seqs=K,
                                 enable_prefix_caching=caching, **engine_kw)
        outs, t = timed(lambda: engine.generate(prompts, p), device)
        tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
        runs[name] = {"num_blocks": blocks, "peak_kv_bytes": engine.peak_used_blocks * per_block, "seconds": t,
                      "output_tok_s": tokens / t, "preemptions": engine.scheduler.num_preemptions,
                      "cow_copies": engine.block_manager.stats["cow_copies"]}
        print(f"rejection {name}: {tokens / t:8.1f} tok/s, peak KV {runs[name]['peak_kv_bytes'] / 2**20:8.1f} MiB, "
              f"preemptions {runs[name]['preemptions']}", flush=True)
        del engine
    return {"prompt_len": P, "samples": K, "new_tokens": L, **runs,
            "throughput_shared_over_separate": runs["shared_n"]["output_tok_s"] / runs["separate_same_pool"]["output_tok_s"],
            "kv_separate_over_shared": runs["separate_unbounded_pool"]["peak_kv_bytes"] / runs["shared_n"]["peak_kv_bytes"],
            "report": "Llama 3 §6.2: PagedAttention gave over 2x throughput in rejection sampling"}


# ------------------------------------------------------------------------------------------------ 5. profile
def kernel_kind(name: str) -> str:
    """Group a CUDA kernel by what it does (names of Triton, cuBLAS/CUTLASS and PyTorch kernels)."""
    low = name.lower()
    if "paged_decode" in low or "merge_splits" in low:
        return "paged decode attention"
    if any(k in low for k in ("gemm", "nvjet", "cutlass", "sm90_", "sm80_", "cublas", "matmul")):
        return "GEMM"
    if "flash" in low or "fmha" in low or "attention" in low:
        return "prefill attention"
    return "other"


def bench_profile(model: Llama, device, batch: int, context: int, steps: int, **engine_kw) -> dict:
    """Profile ``steps`` pure-decode steps of ``batch`` sequences at about ``context`` tokens (after their prefill)."""
    engine, capture_s = start_engine(model, device, **{**engine_kw, "max_num_seqs": batch})
    rng = random.Random(1)
    params = SamplingParams(temperature=0.0, max_tokens=2 * steps + 8, ignore_eos=True)
    for _ in range(batch):
        engine.add_request([rng.randrange(model.cfg.vocab_size) for _ in range(context)], params)
    graphs = engine.runner.graphs
    while not (graphs is not None and graphs.num_runs >= 2) and engine.has_unfinished():
        engine.step()                                           # prefill chunks, then the first decode steps
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    sync()
    runs0 = graphs.num_runs if graphs is not None else 0
    t = time.perf_counter()
    for _ in range(steps // 2):
        engine.step()
    sync()
    plain_s = (time.perf_counter() - t) / (steps // 2)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps // 2):
            engine.step()
        sync()
    by_kind, top = {}, []
    for evt in prof.key_averages():
        dev_us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0) or 0
        if device.type == "cuda" and getattr(evt, "device_type", None) == torch.autograd.DeviceType.CUDA:
            kind = kernel_kind(evt.key)
            by_kind[kind] = by_kind.get(kind, 0.0) + dev_us / 1e6 / (steps // 2)
            top.append((dev_us, evt.key, evt.count))
    top.sort(reverse=True)
    graph_steps = (graphs.num_runs if graphs is not None else 0) - runs0
    per_token_kv = ModelRunner.bytes_per_block(model, 1)
    out = {"batch": batch, "context": context, "steps_timed": steps // 2, "graph_steps": graph_steps,
           "step_s_without_profiler": plain_s, "device_s_per_step_by_kind": by_kind,
           "kv_bytes_read_per_step": batch * context * per_token_kv,
           "top_kernels": [{"name": k[:120], "device_s_per_step": us / 1e6 / (steps // 2), "calls": c}
                           for us, k, c in top[:12]], "graph_capture_s": capture_s,
           "phase_seconds": dict(engine.phase_seconds)}
    print(f"profile: batch {batch} x ~{context} tokens: {plain_s * 1e3:.1f} ms a step without the profiler "
          f"({graph_steps} of {steps} steps replayed graphs); device time a step: "
          + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])),
          flush=True)
    del engine
    return out


# ------------------------------------------------------------------------------------------------ 4. throughput
def requests(n: int, lo: int, hi: int, vocab: int, seed: int = 0):
    rng = random.Random(seed)
    return [([rng.randrange(vocab) for _ in range(rng.randint(lo, hi))], rng.randint(lo, hi)) for _ in range(n)]


def run_engine(model, reqs, device, **engine_kw) -> dict:
    engine, capture_s = start_engine(model, device, **engine_kw)
    graphs = engine.runner.graphs
    params = [SamplingParams(temperature=0.0, max_tokens=o, ignore_eos=True) for _, o in reqs]
    outs, t = timed(lambda: engine.generate([p for p, _ in reqs], params), device)
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    r = {"requests": len(reqs), "seconds": t, "output_tokens": tokens, "output_tok_s": tokens / t,
         "total_tok_s": (tokens + sum(len(p) for p, _ in reqs)) / t, "steps": engine.num_steps,
         "preemptions": engine.scheduler.num_preemptions, "num_blocks": engine.num_blocks,
         "decode_graphs": engine.config.decode_graphs, "graph_steps": graphs.num_runs if graphs else 0,
         "graph_capture_s": capture_s, "phase_seconds": dict(engine.phase_seconds)}
    del engine
    return r


def run_static(fn, reqs, batch: int, device) -> dict:
    """One batch after another; each batch runs to its longest output (the waste continuous batching removes)."""
    def loop():
        for i in range(0, len(reqs), batch):
            chunk = reqs[i:i + batch]
            fn([p for p, _ in chunk], max(o for _, o in chunk))
    _, t = timed(loop, device)
    tokens = sum(o for _, o in reqs)
    return {"requests": len(reqs), "batch": batch, "seconds": t, "output_tokens": tokens, "output_tok_s": tokens / t}


def hf_generate_fn(hf, device):
    @torch.inference_mode()
    def fn(prompts, new_tokens):
        P = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (P - len(p)) + p for p in prompts], device=device)        # left padding
        mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts], device=device)
        hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                    do_sample=False, eos_token_id=None, pad_token_id=0)
    return fn


def hf_static(model, reqs, batch: int, dtype, device) -> dict:
    hf = hf_twin(model, dtype, device)
    try:
        return run_static(hf_generate_fn(hf, device), reqs, batch, device)
    finally:
        del hf


def free_cuda(device) -> None:
    gc.collect()                    # a dropped engine's 40 GB pool must be gone before the next one is allocated
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--smoke", action="store_true", help="GPU mode on tiny shapes (any device)")
    ap.add_argument("--quick", action="store_true", help="CPU mode, smaller workloads")
    ap.add_argument("--requests", type=int, default=None, help="throughput: number of requests")
    ap.add_argument("--baseline-requests", type=int, default=None, help="static/HF baselines: first N requests")
    ap.add_argument("--baseline-max-len", type=int, default=None,
                    help="input/output lengths of the baseline workload at most this (HF eager decode is slow)")
    ap.add_argument("--sections", nargs="*", default=["attention", "memory", "rejection", "throughput"])
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="skip the remaining throughput baselines once this many seconds have passed")
    ap.add_argument("--profile-batch", type=int, default=None, help="profile: sequences (GPU 256)")
    ap.add_argument("--profile-context", type=int, default=None, help="profile: prompt tokens (GPU 1,000)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    gpu = args.mode == "gpu"
    device = torch.device("cuda" if torch.cuda.is_available() and gpu else "cpu")
    if gpu and not args.smoke:
        if device.type != "cuda":
            raise SystemExit("--mode gpu needs CUDA (use --smoke to run its code path on tiny shapes)")
        cfg, dtype = ModelConfig.llama3_8b(max_seq_len=4096), torch.bfloat16
        model, name = random_model(cfg, dtype, device), "llama3-8b shapes, random bf16 weights"
        attn_cases, iters = [(1, 4096), (16, 4096), (64, 1024), (256, 512), (256, 1024)], 50
        mem_n, mem_len = 256, 2048
        rej = (512, 16, 256)
        n_req, lo, hi, n_base, static_batch, base_hi = 256, 100, 1024, 64, 64, 256
        engine_kw = dict(max_num_seqs=256, max_num_batched_tokens=8192, num_blocks=(40 << 30) // (16 * 131072))
    elif gpu:                                                          # smoke: same code path, tiny shapes
        cfg = ModelConfig.tiny(max_seq_len=512)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model, name = random_model(cfg, dtype, device), "tiny shapes, random weights (smoke)"
        attn_cases, iters = [(1, 256), (4, 128)], 5
        mem_n, mem_len = 16, 256
        rej = (32, 4, 16)
        n_req, lo, hi, n_base, static_batch, base_hi = 8, 8, 32, 4, 4, 32
        engine_kw = dict(max_num_seqs=8, max_num_batched_tokens=256)
    else:
        from minillm.model.load import load_smollm2

        model, _ = load_smollm2()
        cfg, dtype, name = model.cfg, torch.float32, "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised to fp32)"
        attn_cases, iters = [(1, 1024), (16, 256)], 10
        mem_n, mem_len = (32, 1024) if args.quick else (128, 2048)
        rej = (128, 8, 64) if args.quick else (512, 16, 256)
        n_req, lo, hi, n_base, static_batch = (16, 8, 64, 16, 8) if args.quick else (32, 16, 160, 32, 8)
        base_hi = hi
        engine_kw = dict(max_num_seqs=64, max_num_batched_tokens=1024)
    n_req = args.requests or n_req
    if args.deadline_s is None:                                        # GPU mode: stay within ~4 minutes
        args.deadline_s = 200.0 if gpu and not args.smoke else 1e9
    n_base = min(args.baseline_requests or n_base, n_req)
    out_path = args.out or Path(f"benchmarks/out/serve_{args.mode}{'_smoke' if args.smoke else ''}.json")
    report = {"benchmark": "serve", "mode": args.mode, "smoke": args.smoke, "quick": args.quick, "model": name,
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "command": " ".join(sys.argv),
              "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
              "threads": torch.get_num_threads()}
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def save(key, value):
        report[key] = value
        report["decode_graph_capture_errors"] = CAPTURE_ERRORS
        report["elapsed_s"] = time.perf_counter() - T0
        report.setdefault("timeline_s", {})[key] = report["elapsed_s"]
        out_path.write_text(json.dumps(report, indent=2))

    print(f"model ready after {time.perf_counter() - T0:.0f} s", flush=True)
    if "attention" in args.sections:
        save("attention", bench_attention(cfg, attn_cases, dtype, device, iters))
    if "memory" in args.sections:
        save("memory", bench_memory(device, mem_n, mem_len))
    if "rejection" in args.sections and time.perf_counter() - T0 < args.deadline_s:
        P, K, L = rej
        save("rejection", bench_rejection(model, P, K, L, device, max_num_batched_tokens=max(2048, P)))
    if "profile" in args.sections:
        pb, pc = (256, 1000) if gpu and not args.smoke else (4, 64)
        save("profile", bench_profile(model, device, args.profile_batch or pb, args.profile_context or pc, 16,
                                      **{**engine_kw, "decode_graphs": "cuda" if device.type == "cuda" else "static"}))
        free_cuda(device)
    if "throughput" in args.sections:
        reqs = requests(n_req, lo, hi, cfg.vocab_size)
        base_hi = args.baseline_max_len or base_hi
        base = requests(n_base, min(lo, base_hi), base_hi, cfg.vocab_size)     # == reqs[:n_base] when base_hi == hi
        run_engine(model, reqs[:2], device, **engine_kw, decode_graphs="off")   # warm-up (Triton compile)
        t = {"protocol": f"nano-vllm: {n_req} requests, input and output lengths uniform in [{lo}, {hi}], "
                         f"random token ids, EOS ignored, greedy; engine vs baselines on {n_base} requests with lengths "
                         f"in [{min(lo, base_hi)}, {base_hi}]",
             "engine": run_engine(model, reqs, device, **engine_kw)}
        ph = t["engine"]["phase_seconds"]
        print(f"throughput engine ({n_req} requests): {t['engine']['output_tok_s']:.1f} output tok/s; seconds in "
              f"host work {ph['host']:.1f}, model launch {ph['model']:.1f}, sampling + wait {ph['sample']:.1f}",
              flush=True)
        save("throughput", t)
        free_cuda(device)
        steps = [("engine_on_baseline_requests", lambda: run_engine(model, base, device, **engine_kw)),
                 ("static_hf_generate", lambda: hf_static(model, base, static_batch, dtype, device))]
        if device.type == "cuda":        # A/B: the same engine with every step on the ragged eager path, no graphs
            steps.append(("engine_on_baseline_requests_no_graphs",
                          lambda: run_engine(model, base, device, **engine_kw, decode_graphs="off")))
        steps.append(("static_minillm",
                      lambda: run_static(lambda p, n: generate(model, p, n), base, static_batch, device)))
        for key, fn in steps:
            if time.perf_counter() - T0 > args.deadline_s:
                t[key] = {"skipped": f"past --deadline-s {args.deadline_s}"}
                print(f"throughput {key}: skipped (past the deadline)", flush=True)
                continue
            t[key] = fn()
            free_cuda(device)
            print(f"throughput {key} ({len(base)} requests): {t[key]['output_tok_s']:.1f} output tok/s", flush=True)
            save("throughput", t)
        with_g, without = (t.get(k, {}).get("output_tok_s") for k in ("engine_on_baseline_requests",
                                                                       "engine_on_baseline_requests_no_graphs"))
        if with_g and without:
            t["graphs_over_no_graphs"] = with_g / without
            print(f"throughput decode graphs / none: {t['graphs_over_no_graphs']:.2f}x", flush=True)
        ours = t["engine_on_baseline_requests"].get("output_tok_s")
        for key in ("static_minillm", "static_hf_generate"):
            if ours and "output_tok_s" in t[key]:
                t[f"engine_over_{key}"] = ours / t[key]["output_tok_s"]
                print(f"throughput engine / {key}: {t[f'engine_over_{key}']:.2f}x", flush=True)
        save("throughput", t)
    print(f"wrote {out_path} after {time.perf_counter() - T0:.0f} s")


if __name__ == "__main__":
    main()
