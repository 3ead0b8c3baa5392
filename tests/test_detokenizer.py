"""Incremental detokenization (``minillm.detokenizer``): the pieces join to one ``decode`` of all the ids, through
Hugging Face's ``DecodeStream`` and through the Python window fallback."""

import pytest

from minillm.detokenizer import IncrementalDecoder, text_chunks
from minillm.tokenizer import train_bpe


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(["hello world, plain ascii text"] * 20, vocab_size=300)


class DecodeOnly:
    """A tokenizer that only has ``decode``: the fallback path."""

    def __init__(self, tok):
        self.tok = tok

    def decode(self, ids, skip_special_tokens=False):
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)


@pytest.mark.parametrize("wrap", [lambda t: t, lambda t: t.hf, DecodeOnly], ids=["minillm", "tokenizers", "decode"])
def test_streamed_pieces_of_multibyte_text_join_to_the_full_decode(bpe, wrap):
    text = "héllo 日本 wörld 🦙 naïve"
    ids = bpe.encode(text)
    assert any("\ufffd" in bpe.decode(ids[:n]) for n in range(1, len(ids)))   # some tokens split a character
    pieces = list(text_chunks(wrap(bpe), ids))
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    assert len(pieces) > 3                                    # really incremental, not one piece at the end


def test_the_fast_path_is_hugging_faces_decode_stream(bpe):
    assert IncrementalDecoder(bpe).stream is not None and IncrementalDecoder(DecodeOnly(bpe)).stream is None


@pytest.mark.parametrize("wrap", [lambda t: t, DecodeOnly], ids=["decode_stream", "window"])
def test_a_character_cut_at_the_end_is_flushed_as_decode_writes_it(bpe, wrap):
    ids = bpe.encode("ok 日")
    cut = next(n for n in range(1, len(ids)) if bpe.decode(ids[:n]).endswith("\ufffd"))
    decoder = IncrementalDecoder(wrap(bpe))
    shown = "".join(decoder.step(i) for i in ids[:cut])
    assert not shown.endswith("\ufffd")
    assert shown + decoder.flush() == bpe.decode(ids[:cut])


def test_special_tokens_are_written_unless_skipped(bpe):
    ids = bpe.encode("hi") + [bpe.eot_id] + bpe.encode(" there")
    assert "".join(text_chunks(bpe, ids)) == bpe.decode(ids)
    assert "".join(text_chunks(bpe, ids, skip_special_tokens=True)) == bpe.decode(ids, skip_special_tokens=True)
