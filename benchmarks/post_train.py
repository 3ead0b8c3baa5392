"""Post-training on a real Llama-architecture model: SmolLM2-135M-Instruct through SFT, rejection sampling and DPO
(report §4; issue "Post-training", the "full setting"). One run, JSON out.

The same code as chapter 5 (``minillm.post``), on a model that can already do some arithmetic: SmolLM2 answers in
its own chat template (the tokenizer renders the GGUF's jinja template; SFT masks everything but the assistant's
tokens), so the stages are measured on held-out problems of the verifiable tasks:

Scored on the spec's target (``post_training_spec``: the format instruction of chapter 5's task; the figures in
``RESULTS.md`` dated 2026-11-27 are from the earlier arithmetic-correctness target):

1. ``base``: the model as shipped, greedy answers of at most ``--max-tokens`` tokens, checked by the checker;
2. ``SFT``: fine-tuned on the templated SFT data only (no samples of its own);
3. ``round r SFT`` / ``round r DPO``: ``run_post_training`` (the loop of ``minillm.post.loop``: reward model →
   rejection sampling with the best policy so far → SFT on all data so far → DPO), ``--rounds`` rounds;

and each change is tested on the same problems (paired bootstrap interval, McNemar's exact test).

    python benchmarks/post_train.py --device cuda                  # the fast spec; minutes on one GPU
    python benchmarks/post_train.py --spec book --device cuda      # larger data and step counts
    python benchmarks/post_train.py --model base --smoke           # the book's base model, tiny counts: a CPU check
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minillm.post import (DPOConfig, RejectionConfig, RewardConfig, SFTConfig,  # noqa: E402
                          build_post_data, evaluate_accuracy, paired_comparison, run_post_training, train_sft)
from minillm.post.loop import post_training_spec  # noqa: E402


def load(model: str, device: str):
    """``(model, tokenizer)`` on ``device``: SmolLM2-135M-Instruct (fp32 weights) or the fast base model."""
    if model == "smollm2":
        from minillm.model.load import load_smollm2
        return load_smollm2(device=device)
    from minillm.train.pretrain import base_model
    net, tokenizer = base_model("fast")[:2]
    return net.to(device), tokenizer


def spec_for(args):
    spec = post_training_spec(args.spec)
    if args.smoke:
        spec = dataclasses.replace(spec, rounds=1, data=dataclasses.replace(spec.data, n_train=24, n_dev=8, n_test=16),
                                   reward=RewardConfig(steps=3, warmup_steps=1, triples_per_step=4), rejection=RejectionConfig(k=2),
                                   rs_prompts=4, sft=SFTConfig(steps=3, warmup_steps=1, examples_per_step=4),
                                   dpo=DPOConfig(steps=3, warmup_steps=1, pairs_per_step=4))
    if args.model == "smollm2":
        # a pre-trained 135M model: the report's rates (§4.1.3: SFT 1e-5; §4.1.4: DPO 1e-5 on 405B), scaled up a
        # little for a small model; the spec's rates (1e-3 and 2e-4) are for the book's tiny base model
        for name, lr in (("sft", 3e-5), ("reward", 3e-5), ("dpo", 3e-6)):
            cfg = getattr(spec, name)
            spec = dataclasses.replace(spec, **{name: dataclasses.replace(cfg, lr=lr, final_lr=lr / 10)})
    if args.rounds is not None:
        spec = dataclasses.replace(spec, rounds=args.rounds)
    return dataclasses.replace(spec, eval_max_tokens=args.max_tokens)


def summary(e: dict) -> dict:
    return {k: e[k] for k in ("acc", "low", "high", "n")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["smollm2", "base"], default="smollm2")
    p.add_argument("--spec", choices=["fast", "book", "full"], default="fast", help="post_training_spec(mode)")
    p.add_argument("--rounds", type=int, default=None, help="override the spec's number of rounds")
    p.add_argument("--max-tokens", type=int, default=24, help="greedy answer length at evaluation")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="one round of a few steps on a few problems")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "post_train.json")
    args = p.parse_args()

    start = time.perf_counter()
    model, tokenizer = load(args.model, args.device)
    spec = spec_for(args)
    data = build_post_data(spec.data)
    stages = {"base": evaluate_accuracy(model.eval(), tokenizer, data.test, spec.eval_max_tokens, target=spec.target)}
    print(f"base: {stages['base']['acc']:.1%} of {stages['base']['n']} test problems", flush=True)
    sft_model = copy.deepcopy(model)
    train_sft(sft_model, tokenizer, list(data.sft_chats), spec.sft)
    stages["SFT"] = evaluate_accuracy(sft_model.eval(), tokenizer, data.test, spec.eval_max_tokens, target=spec.target)
    print(f"SFT: {stages['SFT']['acc']:.1%}", flush=True)
    del sft_model
    result = run_post_training(model, tokenizer, spec, data=data)
    for r in result.rounds:
        for name in ("sft", "dpo"):
            stages[f"round {r['round']} {name.upper()}"] = r["eval"][name]["test"]
    pairs = [("SFT", "base")]
    for r in result.rounds:
        k = r["round"]
        pairs += [(f"round {k} SFT", "SFT" if k == 1 else f"round {k - 1} SFT"), (f"round {k} DPO", f"round {k} SFT")]
    tests = {f"{a} vs {b}": paired_comparison(stages[b]["correct"], stages[a]["correct"], seed=0) for a, b in pairs}
    for name, e in stages.items():
        print(f"{name:>14}: {e['acc']:6.1%}  [{e['low']:.1%}, {e['high']:.1%}]")
    for name, c in tests.items():
        print(f"{name:>28}: {c['diff']:+6.1%}  [{c['low']:+.1%}, {c['high']:+.1%}]  gained {c['gained']}, "
              f"lost {c['lost']}, McNemar p = {c['p']:.3f}")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    out = {"model": args.model, "spec": args.spec, "smoke": args.smoke, "device": args.device,
           "device_name": device_name, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "seconds": time.perf_counter() - start, "spec_used": dataclasses.asdict(spec),
           "stages": {k: summary(v) for k, v in stages.items()}, "tests": tests,
           "rounds": [{k: v for k, v in r.items() if k != "eval"} for r in result.rounds],
           "examples": {k: v.get("examples", []) for k, v in stages.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    print(f"{out['seconds']:.0f} s on {device_name}; wrote {args.out}")


if __name__ == "__main__":
    main()
