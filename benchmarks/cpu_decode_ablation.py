"""What each piece of a CPU decode step costs in place, and what rewriting it buys: an interleaved A/B in one process.

Runs SmolLM2-135M-Instruct (fp32) one batch-1 decode step at a time through ``Llama.forward`` with a ``KVCache`` (the
path of ``minillm.generate``), switching variant every ``--chunk`` steps and reversing the order every round. Every
chunk decodes positions 128 onwards after the same 128-token prompt (its writes replace the last chunk's). The
machine's memory bandwidth drifts over seconds, so only differences paired within a round are compared: each
variant gets the median of its paired differences from the unmodified step, with a 95% interval.

Two kinds of variant:
- *removals* skip a component (timing only: their tokens are wrong). They say what the component costs *inside* a
  step, which is several times what it costs in a loop of its own (see the last measurement below);
- *rewrites* compute the same thing with fewer or different operator calls. Each is checked against the unmodified
  step's logits before it is timed.

``--against DIR`` adds one more variant: the ``Attention.forward`` and ``KVCache.update`` of another checkout of the
repository (for example ``git worktree add /tmp/old <commit>``), to time a change to the decode path against the code
before it.

Last, the small-op penalty: ``silu(g) * u`` on 1,536 values timed alone, and right after a linear that streams a
7 MB weight matrix through the caches (the situation of every small op in a decode step).

    python benchmarks/cpu_decode_ablation.py --out benchmarks/out/cpu_decode_ablation.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import statistics
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from minillm.model import attention, kv_cache, llama, rmsnorm
from minillm.model.load import load_smollm2


def _norm_hf(self, x):                      # Hugging Face's LlamaRMSNorm formula, op by op
    x32 = x.float()
    return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def _rope_addcmul(x, cos, sin):             # x·cos + rotate_half(x)·sin with one addcmul instead of a mul and an add
    x1, x2 = x.chunk(2, dim=-1)
    return torch.addcmul(x * cos, torch.cat([-x2, x1], dim=-1), sin)


def _ffn_inplace(self, x):                  # SwiGLU without the two temporaries
    gate, up = self.w13(x).split(self.ffn_dim, dim=-1)
    return self.w2(F.silu(gate, inplace=True).mul_(up))


def _block_inplace(self, x, cos, sin, mask=None, is_causal=False, cache=None, layer=0, start=0):
    x = x + self.attention(self.attention_norm(x), cos, sin, mask, is_causal, cache, layer, start)
    return x.add_(self.feed_forward(self.ffn_norm(x)))


def _sdpa_skip(q, k, v, mask=None, is_causal=False):
    return q if q.shape[2] == 1 else attention.sdpa_attention(q, k, v, mask, is_causal)


def variants(model) -> dict[str, tuple[str, list]]:
    """name -> (kind, [patches]); a patch is ``(object, attribute, replacement)``."""
    attends = [(layer.attention, "attend", _sdpa_skip) for layer in model.layers]
    return {
        "unmodified": ("base", []),
        "skip RMSNorm (61 calls)": ("removal", [(rmsnorm.RMSNorm, "forward", lambda self, x: x)]),
        "skip RoPE (30 calls)": ("removal", [(attention, "apply_rope", lambda x, cos, sin: x)]),
        "skip decode attention (30 SDPA calls)": ("removal", attends),
        "skip silu·up (30 calls)": ("removal", [(llama.FeedForward, "forward",
                                                  lambda self, x: self.w2(self.w13(x)[..., :self.ffn_dim]))]),
        "RMSNorm as Hugging Face writes it": ("rewrite", [(rmsnorm.RMSNorm, "forward", _norm_hf)]),
        "RoPE with addcmul": ("rewrite", [(attention, "apply_rope", _rope_addcmul)]),
        "SwiGLU in place": ("rewrite", [(llama.FeedForward, "forward", _ffn_inplace)]),
        "residual add in place": ("rewrite", [(llama.Block, "forward", _block_inplace)]),
    }


def older_code(folder: str) -> tuple[str, list]:
    """The variant that swaps in ``Attention.forward`` and ``KVCache.update`` from the checkout at ``folder``."""
    patches = []
    for module, cls, method in ((attention, "Attention", "forward"), (kv_cache, "KVCache", "update")):
        path = Path(folder) / "minillm" / "model" / Path(module.__file__).name
        if not path.is_file():
            raise FileNotFoundError(f"--against {folder}: no {path}; pass the root of another minillm checkout")
        spec = importlib.util.spec_from_file_location(f"older_{path.stem}", path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        patches.append((getattr(module, cls), method, getattr(getattr(old, cls), method)))
    return "rewrite", patches


@contextlib.contextmanager
def patched(patches):
    with contextlib.ExitStack() as stack:
        for obj, name, value in patches:
            stack.enter_context(mock.patch.object(obj, name, value))
        yield


@torch.inference_mode()
def ablate(model, chunk: int, rounds: int, only: list[str] | None = None, prompt_len: int = 128,
           against: str | None = None) -> list[dict]:
    table = {name: v for name, v in variants(model).items()
             if v[0] == "base" or not only or any(word in name for word in only)}
    if against:
        table[f"attention and KV cache of {against}"] = older_code(against)
    tokens = torch.randint(100, 40_000, (1, prompt_len), generator=torch.Generator().manual_seed(0))
    probe = model.new_cache(1, prompt_len + 1)
    model(tokens, cache=probe, start=0)
    reference = model(tokens[:, -1:], positions=torch.tensor([[prompt_len]]), cache=probe, start=prompt_len)
    checks = {}
    for name, (kind, patches) in table.items():          # a rewrite must give the unmodified step's logits
        if kind == "rewrite":
            cache = model.new_cache(1, prompt_len + 1)
            with patched(patches):
                model(tokens, cache=cache, start=0)
                out = model(tokens[:, -1:], positions=torch.tensor([[prompt_len]]), cache=cache, start=prompt_len)
            checks[name] = float((out - reference).abs().max())
            if checks[name] > 1e-3:
                raise AssertionError(f"rewrite {name!r} changed the logits by {checks[name]:.2e}")
    cache = model.new_cache(1, prompt_len + chunk)
    first = model(tokens, cache=cache, start=0)[:, -1].argmax(-1, keepdim=True)
    times = {name: [] for name in table}
    names = list(table)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            x, pos = first, prompt_len          # every chunk decodes the same positions, over the same context length
            with patched(table[name][1]):
                t0 = time.perf_counter()
                for _ in range(chunk):
                    logits = model(x, positions=torch.tensor([[pos]]), cache=cache, start=pos)
                    x, pos = logits[:, -1].argmax(-1, keepdim=True), pos + 1
                times[name].append((time.perf_counter() - t0) / chunk * 1e3)
    base = times["unmodified"]
    rows = []
    for name, (kind, _) in table.items():
        diff = sorted(a - b for a, b in zip(times[name], base))
        lo, hi = median_interval(diff)
        rows.append({"variant": name, "kind": kind, "median_step_ms": statistics.median(times[name]),
                     "paired_diff_median_ms": statistics.median(diff), "paired_diff_ci95_ms": [lo, hi],
                     "faster_rounds": sum(d < 0 for d in diff), "rounds": len(diff),
                     "max_abs_logit_diff": checks.get(name)})
    return rows


def median_interval(values: list[float]) -> tuple[float, float]:
    """A distribution-free 95% interval for the median of sorted ``values``: the order statistics ``n/2 ∓ 0.98·√n``
    (the sign test's normal approximation). A median, not a mean, because a step that the machine stalls shows up as
    one outlying round that a mean would spread over every variant."""
    n = len(values)
    k = max(0, int(math.floor(n / 2 - 0.98 * math.sqrt(n))))
    return values[k], values[min(n - 1, n - 1 - k)]


@torch.inference_mode()
def small_op_penalty(n: int = 600) -> dict:
    """Median µs of ``silu(g) * u`` (1,536 values) alone and right after a 3072×576 oneDNN linear (30 weights cycled)."""
    weights = [torch.randn(3072, 576) for _ in range(30)]
    x, g, u = torch.randn(1, 1, 576), torch.randn(1, 1, 1536), torch.randn(1, 1, 1536)

    def timed(after_linear: bool) -> float:
        ts = []
        for i in range(n):
            if after_linear:
                torch.ops.mkldnn._linear_pointwise(x, weights[i % 30], None, "none", [], "")
            t0 = time.perf_counter()
            F.silu(g) * u
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e6

    timed(False)
    return {"alone_us": timed(False), "after_linear_us": timed(True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=8, help="decode steps per variant per round")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--only", nargs="*", default=None, help="run only variants whose name contains one of these")
    parser.add_argument("--against", default=None, help="another checkout whose attention and KV cache to time")
    parser.add_argument("--out", default="benchmarks/out/cpu_decode_ablation.json")
    args = parser.parse_args()
    model, _ = load_smollm2()
    rows = ablate(model, args.chunk, args.rounds, args.only, against=args.against)
    penalty = small_op_penalty()
    for r in rows:
        check = "" if r["max_abs_logit_diff"] is None else f"  (logits within {r['max_abs_logit_diff']:.1e})"
        lo, hi = r["paired_diff_ci95_ms"]
        print(f"{r['variant']:40s} {r['kind']:8s} median {r['median_step_ms']:6.2f} ms  paired "
              f"{r['paired_diff_median_ms']:+6.2f} ms [{lo:+.2f}, {hi:+.2f}]  faster in {r['faster_rounds']}/"
              f"{r['rounds']}{check}")
    print(f"silu(g)*u: {penalty['alone_us']:.1f} µs alone, {penalty['after_linear_us']:.1f} µs after a linear")
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "chunk": args.chunk,
              "rounds": args.rounds, "variants": rows, "small_op_penalty": penalty}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
