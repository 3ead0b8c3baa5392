"""Command line: build the curated pre-training corpus (report §3.1).

    python -m minillm.data build --out DIR [--fast] [--mode book] [--workers 2] [--seed 0]

Writes ``DIR/corpus.jsonl``, ``DIR/report.json`` and ``DIR/truth.json`` (see ``minillm.data.corpus``) and prints the
per-stage table: documents in and out, seconds, and precision/recall against the planted truth.
"""

from __future__ import annotations

import argparse
import os
import sys

from minillm.data.corpus import build_corpus, crawl_config
from minillm.data.pipeline import PipelineConfig


def summary(report: dict) -> str:
    """A plain-text table of the report: stages, bad inputs, scores, mix."""
    ev = report["evaluation"]
    lines = [f"{'stage':<14}{'in':>8}{'out':>8}{'seconds':>9}"]
    lines += [f"{s['stage']:<14}{s['docs_in']:>8}{s['docs_out']:>8}{s['seconds']:>9.2f}" for s in report["stages"]]
    lines.append(f"bad inputs counted: {report['bad_input']}")
    lines.append(f"url_dedup   precision {ev['url_dedup']['precision']:.3f} recall {ev['url_dedup']['recall']:.3f} "
                 f"exact {ev['url_dedup']['exact']}")
    lines.append(f"minhash     precision {ev['minhash']['precision']:.3f} recall {ev['minhash']['recall']:.3f} "
                 f"({ev['minhash']['pairs_at_threshold']} planted pairs at J >= threshold)")
    lines.append(f"line_dedup  boilerplate removed {ev['line_dedup']['recall']:.3f}, other lines removed "
                 f"{ev['line_dedup']['other_lines_removed']:.3f}")
    for name in ("heuristics", "quality"):
        scores = " ".join(f"{k} {v:.3f}" for k, v in ev[name].items() if k.endswith("recall") or k == "clean_removed")
        lines.append(f"{name:<12}{scores}")
    lines.append(f"pii         recall {ev['pii']['recall']:.3f} over {ev['pii']['planted']} planted strings")
    lines.append(f"domain      accuracy {ev['domain']['accuracy']:.3f}")
    mix = report["mix"]
    lines.append("mix         " + "  ".join(f"{d} {mix['achieved'].get(d, 0):.2f} (report {mix['target'][d]:.2f})"
                                            for d in mix["target"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minillm.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the crawl, curate it, write corpus + report")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--fast", action="store_true", help="the fast (CI) size: same as --mode fast")
    build.add_argument("--mode", choices=("fast", "book", "full"), default="book")
    build.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    mode = "fast" if args.fast else args.mode
    report = build_corpus(args.out, crawl_config(mode, args.seed), PipelineConfig(seed=args.seed, workers=args.workers),
                          progress=not args.quiet)
    print(summary(report))
    print(f"wrote {args.out}/corpus.jsonl ({report['docs_out']} documents, {report['tokens_out']} words), "
          f"report.json, truth.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
