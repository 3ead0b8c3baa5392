"""The command line: ``python -m minillm generate`` and ``chat`` on SmolLM2, flags checked before loading, stdout
carrying only the model's text, incremental streaming of text that splits UTF-8, and the packaging of the CLI."""

import io
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm
import minillm.__main__ as cli
from minillm.__main__ import print_stream, text_chunks
from minillm.tokenizer import train_bpe

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    try:
        from minillm.model.load import smollm2_gguf_path
        smollm2_gguf_path()
        import gguf  # noqa: F401
    except ImportError as err:
        pytest.skip(str(err))
    return subprocess.run([sys.executable, "-m", "minillm", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_generate_answers_the_capital_question_with_paris_and_keeps_status_lines_off_stdout():
    done = run_cli("generate", "--model", "smollm2", "--prompt", "What is the capital of France?", "--chat",
                   "--max-new-tokens", "24", "--verbose")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout
    assert "[minillm] loaded smollm2" in done.stderr            # --verbose status lines: on stderr ...
    assert "[minillm]" not in done.stdout and "loading" not in done.stdout   # ... never in the piped text


def test_chat_answers_from_stdin_and_exits_at_end_of_input():
    done = run_cli("chat", "--model", "smollm2", "--max-new-tokens", "24", stdin="What is the capital of France?\n")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout


def test_a_missing_model_file_names_the_valid_choices():
    done = subprocess.run([sys.executable, "-m", "minillm", "generate", "--model", "/no/such/model.gguf",
                           "--prompt", "hi"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m minillm generate: error: argument --model: '/no/such/model.gguf' is neither")
    assert "smollm2" in last and "Hugging Face folder" in last and ".gguf file" in last


@pytest.mark.parametrize("flags, message", [
    (["--top-p", "2"], "top_p must be None (no nucleus) or in (0, 1], got 2.0"),
    (["--top-p", "0"], "top_p must be"),
    (["--top-p", "x"], "'x' is not a number"),
    (["--temperature", "-0.5"], "temperature must be a finite number >= 0"),
    (["--temperature", "nan"], "temperature must be a finite number >= 0"),
    (["--top-k", "0"], "top_k must be None (no limit) or an int >= 1"),
    (["--max-new-tokens", "0"], "must be an integer >= 1, got 0"),
    (["--max-new-tokens", "1.5"], "'1.5' is not an integer"),
    (["--model", "no-such-model"], "'no-such-model' is neither a shortcut nor an existing path; choose one of: smollm2"),
])
@pytest.mark.parametrize("command", ["generate", "chat"])
def test_bad_flags_are_rejected_before_the_model_loads(monkeypatch, capsys, command, flags, message):
    monkeypatch.setattr(cli, "load", lambda model: pytest.fail(f"loaded {model} despite {flags}"))
    argv = [command, "--model", "smollm2", *flags] + (["--prompt", "hi"] if command == "generate" else [])
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and f"argument {flags[0]}" in err


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip().endswith(f" {minillm.__version__}")


def test_pyproject_names_a_free_distribution_one_version_source_and_the_console_script():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["name"] != "minillm"                 # PyPI's minillm is an unrelated project
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "minillm.__version__"}
    assert project["project"]["license"] == "Apache-2.0" and "Apache License" in (ROOT / "LICENSE").read_text()
    module, _, function = project["project"]["scripts"]["minillm"].partition(":")
    assert module == "minillm.__main__" and callable(getattr(cli, function))


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


class DecodeOnly:
    """A tokenizer with only ``decode`` (no ``tokenizers.Tokenizer`` inside): the Python window fallback. Records
    the length of every id list it decodes."""

    def __init__(self, tok):
        self.tok, self.sizes = tok, []

    def decode(self, ids, skip_special_tokens=False):
        self.sizes.append(len(ids))
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(["hello world, plain ascii text"] * 20, vocab_size=300)


TEXT = "Llamas 🦙🦙 grazing — 你好，世界！ こんにちは 😀 naïve café héllo 日本 " * 8


def test_streaming_without_decode_stream_decodes_a_small_window_and_matches_a_full_decode(bpe):
    ids = bpe.encode(TEXT)
    assert len(ids) > 400 and bpe.decode(ids) == TEXT
    tok = DecodeOnly(bpe)
    pieces = list(text_chunks(tok, iter(ids)))
    assert "".join(pieces) == TEXT and not any("\ufffd" in p for p in pieces)
    assert max(tok.sizes) <= 8              # 4-byte emoji: at most its 4 byte tokens, plus the context before it
    assert sum(tok.sizes) < 6 * len(ids)    # a full re-decode per token would be ~len(ids)**2 / 2 ids


def test_streaming_a_real_tokenizer_goes_through_decode_stream_not_repeated_decodes(bpe, monkeypatch):
    ids = bpe.encode(TEXT)
    calls = []
    decode = bpe.decode
    monkeypatch.setattr(bpe, "decode", lambda i, **kw: calls.append(len(i)) or decode(i, **kw))
    out = io.StringIO()
    assert print_stream(bpe, iter(ids), out) == TEXT == out.getvalue()
    assert len(calls) <= 1                  # only the final flush decodes all ids; each token is a DecodeStream step


def test_the_first_conversion_of_smollm2_shows_a_progress_bar_on_stderr(tmp_path, monkeypatch, capsys):
    from minillm.model import load

    try:
        load.smollm2_gguf_path()
    except ImportError as err:
        pytest.skip(str(err))
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path))
    monkeypatch.setattr(load, "load_pretrained", lambda path, *a: ("model", "tokenizer"))
    monkeypatch.setattr(load, "save_pretrained", lambda m, t, out: (Path(out) / "config.json").write_text("{}"))
    load.load_smollm2()
    out, err = capsys.readouterr()
    assert out == "" and "smollm2: converting the GGUF once" in err and "2/2" in err
    load.load_smollm2()                     # cached now: no bar
    assert "converting" not in capsys.readouterr().err


@settings(max_examples=100, deadline=None, database=None)
@given(data=st.data())
def test_streaming_any_ids_joins_to_the_full_decode(bpe, data):
    """Arbitrary ids (invalid UTF-8, special tokens, text cut inside a character) give the text of one decode."""
    ids = data.draw(st.lists(st.integers(0, bpe.vocab_size - 1), max_size=40))
    assert "".join(text_chunks(bpe, iter(ids))) == bpe.decode(ids)
