"""The command line: ``python -m minillm generate`` and ``chat`` on SmolLM2, and streaming text that splits UTF-8."""

import io
import subprocess
import sys

import pytest

from minillm.__main__ import print_stream
from minillm.tokenizer import train_bpe


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    try:
        from minillm.model.load import smollm2_gguf_path
        smollm2_gguf_path()
        import gguf  # noqa: F401
    except ImportError as err:
        pytest.skip(str(err))
    return subprocess.run([sys.executable, "-m", "minillm", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_generate_answers_the_capital_question_with_paris():
    done = run_cli("generate", "--model", "smollm2", "--prompt", "What is the capital of France?", "--chat",
                   "--max-new-tokens", "24")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout


def test_chat_answers_from_stdin_and_exits_at_end_of_input():
    done = run_cli("chat", "--model", "smollm2", "--max-new-tokens", "24", stdin="What is the capital of France?\n")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout


def test_a_missing_model_file_is_one_clear_error_line():
    done = subprocess.run([sys.executable, "-m", "minillm", "generate", "--model", "/no/such/model.gguf",
                           "--prompt", "hi"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip() == "error: /no/such/model.gguf does not exist"


def test_streaming_holds_back_utf8_characters_split_across_tokens():
    tok = train_bpe(["hello world, plain ascii text"] * 20, vocab_size=300)
    text = "héllo 🦙 wörld 你好"
    ids = tok.encode(text)
    assert len(ids) > len(text.encode("utf-8")) / 2          # multi-byte characters span several byte tokens
    assert any("\ufffd" in tok.decode(ids[:n]) for n in range(1, len(ids)))
    out = io.StringIO()
    writes = []
    out.write = lambda s: writes.append(s) or len(s)          # record every chunk written
    assert print_stream(tok, iter(ids), out) == text
    assert "".join(writes) == text and not any("\ufffd" in w for w in writes)
