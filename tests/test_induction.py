"""The repeated-random-tokens induction test scores a perfect copier near its maximum and a fresh model near 0."""

import math

import pytest
import torch
from torch import nn

from minillm import Llama, ModelConfig
from minillm.eval.induction import induction_score


class Copier(nn.Module):
    """A hand-written induction head: at every position, predict the token that followed the previous occurrence of
    the current token (uniform logits where there was none)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, tokens):                                   # (B, T) → (B, T, V)
        B, T = tokens.shape
        logits = torch.zeros(B, T, self.vocab)
        for b in range(B):
            for t in range(T):
                earlier = (tokens[b, :t] == tokens[b, t]).nonzero()
                if len(earlier):
                    logits[b, t, tokens[b, int(earlier[-1]) + 1]] = 30.0
        return logits


def test_a_perfect_copier_gains_the_whole_first_copy_loss():
    score = induction_score(Copier(5000), 5000, n_seqs=3, length=20, seed=1)
    assert score["first"] == pytest.approx(math.log(5000), rel=0.02)     # random tokens: uniform
    assert score["second"] < 0.01
    assert score["gain"] == pytest.approx(score["first"] - score["second"])


def test_a_fresh_model_has_no_induction_and_bad_arguments_are_named():
    torch.manual_seed(0)
    model = Llama(ModelConfig.tiny(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=300,
                                   max_seq_len=64))
    score = induction_score(model, 300, n_seqs=4, length=32, low_id=10)
    assert abs(score["gain"]) < 0.1
    with pytest.raises(ValueError, match="max_seq_len"):
        induction_score(model, 300, length=40)
    with pytest.raises(ValueError, match="low_id"):
        induction_score(model, 300, low_id=300)
