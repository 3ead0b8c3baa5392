"""Regrouping KV heads: expansion preserves the function, pooling averages heads as in the GQA paper."""

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.model.kv_heads import regroup_kv_heads


@pytest.fixture
def gqa() -> Llama:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=64, n_layers=2, n_heads=8, n_kv_heads=4, ffn_dim=96, vocab_size=101, max_seq_len=64)
    return Llama(cfg).eval()


def test_expanding_to_mha_computes_the_same_function(gqa):
    mha = regroup_kv_heads(gqa, 8)
    x = torch.randint(0, 101, (2, 12))
    assert mha.cfg.attention_type == "MHA"
    torch.testing.assert_close(mha(x), gqa(x))


def test_pooling_to_mqa_averages_the_key_and_value_heads(gqa):
    mqa = regroup_kv_heads(gqa, 1)
    w, w1 = gqa.layers[0].attention.wqkv.weight, mqa.layers[0].attention.wqkv.weight
    k = w[64:96].view(4, 8, 64)
    torch.testing.assert_close(w1[64:72], k.mean(0))
    torch.testing.assert_close(w1[:64], w[:64])                 # queries untouched
    x = torch.randint(0, 101, (1, 10))
    assert not torch.allclose(mqa(x), gqa(x))                   # pooling changes the function


def test_pooling_identical_heads_is_exact(gqa):
    mha = regroup_kv_heads(gqa, 8)                              # heads come in identical pairs
    back = regroup_kv_heads(mha, 4)
    x = torch.randint(0, 101, (1, 10))
    torch.testing.assert_close(back(x), gqa(x))


def test_bad_head_counts_raise(gqa):
    with pytest.raises(ValueError, match="divisor"):
        regroup_kv_heads(gqa, 3)
