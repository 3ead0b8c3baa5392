"""The long-context stage: extending the context keeps the weights, needle probes are well formed, stages run."""

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.eval.choice import score_choices
from minillm.tokenizer import train_bpe
from minillm.train.evaluate import evaluate, window_losses
from minillm.train.long_context import ContextStage, extend_context, long_context_stage, needle_items
from minillm.train.packing import pack_texts

WORDS = [f"{a}{b}{c}" for a in "bcdfghklmnprst" for b in "aeiou" for c in "lmnrst"][:300]


def _texts(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[j] for j in torch.randint(0, len(WORDS), (60,), generator=g).tolist()) + "."
            for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(_texts() + ["The secret number is 1234567890."] * 3, vocab_size=400)


def _model(vocab, seq_len=32):
    torch.manual_seed(0)
    return Llama(ModelConfig.tiny(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=vocab,
                                  max_seq_len=seq_len))


def test_extending_the_context_keeps_the_weights_and_only_theta_changes_the_output():
    model = _model(64)
    tokens = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    same_theta = extend_context(model, 128)
    assert same_theta.cfg.max_seq_len == 128 and same_theta is not model
    torch.testing.assert_close(same_theta(tokens), model(tokens), rtol=0, atol=0)
    bigger_theta = extend_context(model, 128, rope_theta=500_000.0)
    assert bigger_theta.cfg.rope_theta == 500_000.0
    for name, w in model.state_dict().items():                              # every weight carried over
        assert torch.equal(bigger_theta.state_dict()[name], w), name
    assert not torch.allclose(bigger_theta(tokens), model(tokens))          # positions rotate differently


def test_needle_items_plant_the_answer_and_fit_the_length(tokenizer):
    items = needle_items(tokenizer, _texts(), seq_len=96, n_items=6, seed=2)
    assert items == needle_items(tokenizer, _texts(), seq_len=96, n_items=6, seed=2)
    for item in items:
        number = item.options[item.answer].strip(" .")
        assert f"The secret number is {number}." in item.prompt and item.prompt.endswith("The secret number is")
        assert len(set(item.options)) == 4
        assert 1 + len(tokenizer.encode(item.prompt)) + len(tokenizer.encode(item.options[0])) <= 96
        assert len(tokenizer.encode(item.prompt)) > 60                      # most of the length is hay
    with pytest.raises(ValueError, match="seq_len"):
        needle_items(tokenizer, _texts(), seq_len=20, n_items=1)


def test_long_context_stages_run_in_order_and_report_both_criteria(tokenizer):
    texts = _texts(40)
    train = pack_texts(texts[:30], tokenizer)
    val = pack_texts(texts[30:], tokenizer)
    model = _model(tokenizer.vocab_size, seq_len=32)
    stages = [ContextStage(64, 2, rope_theta=20_000.0), ContextStage(128, 2, rope_theta=40_000.0)]
    final, rows = long_context_stage(model, tokenizer, train, val, texts[30:], stages, batch_tokens=256, lr=1e-3,
                                     short_seq_len=32, n_needles=3, progress=False)
    assert [r["seq_len"] for r in rows] == [32, 64, 128] and final.cfg.max_seq_len == 128
    assert [r["rope_theta"] for r in rows] == [10_000.0, 20_000.0, 40_000.0]
    assert rows[0]["needle_acc"] is None                                   # 32 tokens hold no haystack
    # each row measures the model of its stage at its stage's length: the start at 32, the final model at 128
    start = window_losses(_model(tokenizer.vocab_size, seq_len=32), val, 32)
    assert rows[0]["short_window_losses"] == pytest.approx(start.tolist(), rel=1e-6)
    assert rows[0]["short_loss"] == pytest.approx(float(start.mean()), rel=1e-6)
    assert rows[-1]["short_loss"] == pytest.approx(float(window_losses(final, val, 32).mean()), rel=1e-6)
    assert abs(rows[0]["short_loss"] - evaluate(_model(tokenizer.vocab_size, seq_len=32), val, 32)["loss"]) < 0.05
    assert rows[-1]["short_loss"] != pytest.approx(float(start.mean()), rel=1e-3)                   # the stages trained
    needles = needle_items(tokenizer, texts[30:], 128, 3)
    assert rows[-1]["needle_acc"] == score_choices(final, tokenizer, needles, max_len=128)["acc"]


def test_stages_read_new_text_from_start_token_with_a_decaying_rate(tokenizer, monkeypatch):
    texts = _texts(40)
    train = pack_texts(texts[:30], tokenizer)
    val = pack_texts(texts[30:], tokenizer)
    seen = []                                                  # (stream position, lr) of every step
    from minillm.train import trainer as trainer_module

    real_step = trainer_module.Trainer.train_step

    def spy(self):
        seen.append((self.loader.position, self.cfg.schedule.lr(self.step)))
        return real_step(self)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", spy)
    stages = [ContextStage(64, 3), ContextStage(128, 3)]
    _, rows = long_context_stage(_model(tokenizer.vocab_size, seq_len=32), tokenizer, train, val, texts[30:], stages,
                                 batch_tokens=256, lr=1e-3, short_seq_len=32, n_needles=2, progress=False,
                                 start_token=500, final_lr=1e-5, short_windows=5)
    assert [p for p, _ in seen] == [500, 756, 1012, 1268, 1524, 1780]           # 256 new tokens per step, no re-reading
    assert seen[0][1] == pytest.approx(1e-3) and seen[3][1] == pytest.approx(1e-3)   # each stage starts at lr …
    assert seen[2][1] < 0.6e-3 and seen[5][1] < 0.6e-3                                  # … and decays
    for row in rows:
        assert len(row["short_window_losses"]) == 5
        assert set(row["induction"]) == {"first", "second", "gain"}
    with pytest.raises(ValueError, match="start_token"):
        long_context_stage(_model(tokenizer.vocab_size, seq_len=32), tokenizer, train, val, texts[30:], stages,
                           batch_tokens=256, lr=1e-3, short_seq_len=32, n_needles=2, progress=False,
                           start_token=len(train) - 10)
