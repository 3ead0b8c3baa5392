"""Sequence packing with document ids (report §3.4.1): ids continue across sequence boundaries, targets never cross
documents, and no token can attend to — or get gradient from — another document."""

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.model import document_mask
from minillm.train import IGNORE, StreamLoader, batch_at, pack_documents, pack_texts, token_losses

BOS, EOS = 1, 2


def _docs(lengths, seed=0, vocab=60):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def test_packed_stream_is_the_documents_in_order_with_bos_eos_and_their_ids():
    docs = _docs([5, 12, 3, 9])
    data = pack_documents(docs, BOS, EOS)
    expected = sum(([BOS, *d, EOS] for d in docs), [])
    assert data.tokens.tolist() == expected
    assert data.doc_ids.tolist() == sum(([i] * (len(d) + 2) for i, d in enumerate(docs)), [])
    assert data.n_documents == 4


def test_a_document_cut_by_a_sequence_boundary_keeps_its_id_in_the_next_sequence():
    docs = _docs([5, 12, 3, 9])
    data = pack_documents(docs, BOS, EOS)
    batch = batch_at(data, 0, batch_size=4, seq_len=8)                     # 33 tokens of 37
    # rows laid end to end are the stream; row 1 starts inside document 1 (tokens 7..20) and carries its id
    assert torch.equal(batch.tokens.flatten(), data.tokens[:32])
    assert torch.equal(batch.doc_ids.flatten(), data.doc_ids[:32])
    assert batch.doc_ids[0, -1] == batch.doc_ids[1, 0] == 1
    assert batch.doc_ids[1].tolist() == [1] * 8


def test_targets_are_next_tokens_except_across_documents():
    data = pack_documents(_docs([4, 6, 5]), BOS, EOS)
    batch = batch_at(data, 0, batch_size=2, seq_len=9)
    stream, ids = data.tokens, data.doc_ids
    for b in range(2):
        for t in range(9):
            i = b * 9 + t
            want = stream[i + 1].item() if ids[i + 1] == ids[i] else IGNORE
            assert batch.targets[b, t].item() == want
    assert (batch.targets == IGNORE).sum() == 2                            # two EOS → BOS transitions in 18 targets


def test_document_mask_of_a_packed_batch_allows_only_earlier_tokens_of_the_same_document():
    data = pack_documents(_docs([3, 7, 2, 11, 4, 6]), BOS, EOS, shuffle_seed=1)
    batch = batch_at(data, 0, batch_size=3, seq_len=10)
    mask = document_mask(batch.doc_ids)                                     # (B, 1, T, T)
    B, T = batch.doc_ids.shape
    for b in range(B):
        for i in range(T):
            for j in range(T):
                allowed = j <= i and batch.doc_ids[b, i] == batch.doc_ids[b, j]
                assert mask[b, 0, i, j].item() == bool(allowed)


@pytest.mark.parametrize("attn_impl", ["sdpa", "ref"])
def test_loss_on_one_document_has_zero_gradient_wrt_embeddings_of_another(attn_impl):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=64, max_seq_len=32)
    model = Llama(cfg, attn_impl=attn_impl)
    data = pack_documents(_docs([9, 6, 10]), BOS, EOS)                      # 11 + 8 + 12 tokens
    batch = batch_at(data, 0, batch_size=1, seq_len=30)
    embedded = {}

    def keep(module, inputs, output):
        output.retain_grad()
        embedded["h"] = output

    model.tok_embeddings.register_forward_hook(keep)

    def grads(doc_ids):
        model.zero_grad()
        losses = token_losses(model, batch.tokens, batch.targets, doc_ids)  # (1, T)
        losses[batch.doc_ids == 2].sum().backward()                        # the loss of the last document only
        return embedded["h"].grad[0].abs().sum(-1)                          # (T,) gradient size per position

    g = grads(batch.doc_ids)
    other = batch.doc_ids[0] != 2
    assert other.sum() == 19 and torch.all(g[other] == 0)                   # exactly zero, not just small
    assert torch.all(g[~other][:-1] > 0)
    # without the document mask the same loss reaches back into the earlier documents (the test has teeth)
    assert torch.all(grads(None)[other] > 0)


def test_pack_texts_counts_the_utf8_bytes_of_each_document():
    from minillm.tokenizer import book_tokenizer

    tok = book_tokenizer()
    texts = ["Hello, world!", "Größe und Maß — 大きさ", "def f(x):\n    return x + 1\n"]
    data = pack_texts(texts, tok)
    for i, text in enumerate(texts):
        assert int(data.token_bytes[data.doc_ids == i].sum()) == len(text.encode("utf-8"))
    assert data.tokens[0] == tok.bos_id and data.tokens[-1] == tok.eos_id


def test_stream_loader_wraps_into_a_new_epoch_and_its_state_resumes_it():
    data = pack_documents(_docs([20, 20, 20]), BOS, EOS)                   # 66 tokens
    loader = StreamLoader(data)
    first = [loader.next_batch(2, 8) for _ in range(5)]                     # 4 batches fit, the 5th wraps
    assert loader.epoch == 1 and torch.equal(first[4].tokens, first[0].tokens)
    again = StreamLoader(data)
    again.load_state_dict({"position": 32, "epoch": 0})
    assert torch.equal(again.next_batch(2, 8).tokens, first[2].tokens)


def test_packing_errors_say_what_to_do():
    with pytest.raises(ValueError, match="no non-empty document"):
        pack_documents([[], []])
    with pytest.raises(ValueError, match="pack more documents"):
        batch_at(pack_documents([[5, 6, 7]]), 0, 2, 4)
