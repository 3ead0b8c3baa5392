"""Pre-training throughput and MFU of ``minillm.train.Trainer`` on one device (report §3.3.2: 38-43% MFU on H100s).

GPU mode: a Llama-3.2-1B-shaped model (width 2,048, 16 layers, 32 query / 8 KV heads, FFN 8,192, 128K vocabulary,
tied embeddings), bf16 autocast, ``torch.compile``, random packed documents. Reports tokens/s and MFU, where model
FLOPs are ``ModelConfig.flops_per_token`` (6N + 12·L·d·T, PaLM's count) and the peak is (a) a bf16 matmul measured in
the same process and (b) the card's dense bf16 spec when given with ``--spec-tflops``.

    python benchmarks/train.py --out benchmarks/out/train_gpu.json            # a few minutes on an H100 (compile)
    python benchmarks/train.py --smoke                                        # the same code path, tiny, on CPU

Without ``--doc-mask`` attention runs causal-only so SDPA may pick the flash kernel; with it the dense (B, 1, T, T)
document mask sends SDPA to the memory-efficient kernel (report the two separately).
Timing: host wall clock per optimizer step (each step ends with a device sync when its loss is read), median over
the steps after ``--warmup-steps``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minillm import Llama, ModelConfig  # noqa: E402
from minillm.train import BatchRamp, LRSchedule, TrainConfig, Trainer, pack_documents  # noqa: E402


def matmul_peak(device: torch.device, n: int = 8192, reps: int = 20) -> float:
    """Measured bf16 matmul FLOP/s (``n³`` GEMMs, CUDA events); NaN off CUDA."""
    if device.type != "cuda":
        return float("nan")
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3)


def random_stream(vocab: int, n_tokens: int, seed: int = 0):
    """Random documents of 200-4,000 tokens until ``n_tokens`` are packed."""
    g = torch.Generator().manual_seed(seed)
    docs, total = [], 0
    while total < n_tokens:
        n = int(torch.randint(200, 4000, (1,), generator=g))
        docs.append(torch.randint(0, vocab - 300, (n,), generator=g).tolist())
        total += n + 2
    return pack_documents(docs, vocab - 2, vocab - 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model, 4 steps, CPU-friendly")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=8, help="sequences per optimizer step")
    p.add_argument("--micro-batch", type=int, default=2, help="sequences per forward pass")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup-steps", type=int, default=8, help="steps left out of the timing (compile, allocator)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--doc-mask", action="store_true", help="train with document masks (dense mask, no flash)")
    p.add_argument("--spec-tflops", type=float, default=None, help="the card's dense bf16 TFLOP/s (H100 SXM: 989)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "train.json")
    args = p.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        cfg = ModelConfig.tiny(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=512,
                               max_seq_len=128)
        args.seq_len, args.batch_size, args.micro_batch, args.steps, args.warmup_steps = 128, 4, 2, 4, 1
    else:
        cfg = ModelConfig(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192, vocab_size=128_256,
                          max_seq_len=args.seq_len, rope_theta=500_000.0, tie_embeddings=True, name="llama3.2-1b")
    measured = matmul_peak(device)
    peak = measured if measured == measured else None
    data = random_stream(cfg.vocab_size, args.batch_size * args.seq_len * args.steps + 1)
    train_cfg = TrainConfig(steps=args.steps, schedule=LRSchedule(3e-4, 2, args.steps, 3e-5),
                            batch=BatchRamp.constant(args.batch_size, args.seq_len), micro_batch_size=args.micro_batch,
                            use_doc_mask=args.doc_mask, compile=not args.no_compile and device.type == "cuda",
                            peak_flops=peak)
    torch.manual_seed(0)
    with torch.device(device):                      # initialise on the device: seconds, not a minute, for 1.2B
        model = Llama(cfg)
    trainer = Trainer(model, train_cfg, data)
    wall = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - wall
    timed = trainer.history[args.warmup_steps:]
    tok_s = statistics.median(r["tokens_per_s"] for r in timed)
    flops = cfg.flops_per_token(args.seq_len) * tok_s
    report = dict(
        device=torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__, config=cfg.name, params=cfg.num_params(), seq_len=args.seq_len,
        batch_size=args.batch_size, micro_batch=args.micro_batch, compile=train_cfg.compile,
        doc_mask=args.doc_mask, steps=args.steps, warmup_steps=args.warmup_steps, wall_s=wall,
        tokens_per_s=tok_s, model_tflops=flops / 1e12, matmul_peak_tflops=measured / 1e12,
        mfu_vs_measured_peak=flops / measured if peak else None,
        mfu_vs_spec=flops / (args.spec_tflops * 1e12) if args.spec_tflops else None,
        losses=[r["loss"] for r in trainer.history],
        max_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    )
    print(json.dumps({k: v for k, v in report.items() if k != "losses"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
