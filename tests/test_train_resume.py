"""The trainer: exact resume from a checkpoint, the batch ramp, evaluation (loss, bits per byte), checkpoint averaging."""

import math

import pytest
import torch
from safetensors.torch import load_model

from minillm import Llama, ModelConfig
from minillm.train import (BatchRamp, LRSchedule, RampStage, TrainConfig, Trainer, average_checkpoints, evaluate,
                           list_checkpoints, pack_documents, token_losses)
from minillm.train.packing import IGNORE, batch_at

CFG = ModelConfig.tiny(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=64, max_seq_len=32)


def _data(seed=0, n_docs=60, byte_lengths=None):
    g = torch.Generator().manual_seed(seed)
    docs = [torch.randint(3, 64, (int(torch.randint(4, 30, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n_docs)]
    return pack_documents(docs, 1, 2, byte_lengths=byte_lengths)


def _config(steps=8, **kw):
    # the ramp switches from 4 × 8 to 4 × 16 tokens after 96 tokens (step 3), with 2 micro-batches per step
    ramp = BatchRamp((RampStage(0, 32, 8), RampStage(96, 64, 16)))
    base = dict(steps=steps, schedule=LRSchedule(1e-2, 2, 8, 1e-3), batch=ramp, micro_batch_size=2,
                progress=False)
    return TrainConfig(**{**base, **kw})


def _model(seed):
    torch.manual_seed(seed)
    return Llama(CFG)


def test_interrupted_and_resumed_run_gives_bit_identical_losses(tmp_path):
    data = _data()
    full = Trainer(_model(0), _config(), data)
    full.fit()
    first = Trainer(_model(0), _config(checkpoint_every=4), data, run_dir=tmp_path)
    first.fit(stop_at=5)                                                    # checkpoints at step 4, then "crashes"
    resumed = Trainer(_model(123), _config(), data)                         # other init: everything comes from disk
    resumed.load(list_checkpoints(tmp_path)[-1])
    assert resumed.step == 4
    resumed.fit()
    losses = [row["loss"] for row in full.history]
    assert [row["loss"] for row in resumed.history] == losses               # exactly, step by step
    assert [row["seq_len"] for row in full.history] == [8, 8, 8, 16, 16, 16, 16, 16]
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert losses[-1] < losses[0]


def test_trainer_loss_equals_the_mean_target_loss_of_the_batch():
    data = _data()
    model = _model(0)
    reference = _model(0)
    trainer = Trainer(model, _config(steps=1), data)
    batch = batch_at(data, 0, 4, 8)
    with torch.no_grad():
        want = token_losses(reference, batch.tokens, batch.targets, batch.doc_ids)
    trainer.fit()
    assert trainer.history[0]["loss"] == pytest.approx(float(want.sum() / (batch.targets != IGNORE).sum()), rel=1e-6)
    assert trainer.history[0]["lr"] == 5e-3                                 # step 0 of a 2-step warm-up to 1e-2


def test_evaluate_reports_loss_and_bits_per_byte():
    byte_lengths = torch.arange(64) % 3 + 1                                 # made-up bytes per token id
    data = _data(seed=1, n_docs=10, byte_lengths=byte_lengths)
    model = _model(0)
    result = evaluate(model, data, seq_len=16, batch_size=3)
    n = data.n_windows(16)
    batch = batch_at(data, 0, n, 16)
    with torch.no_grad():
        losses = token_losses(model, batch.tokens, batch.targets, batch.doc_ids)
    valid = batch.targets != IGNORE
    n_bytes = int(byte_lengths[batch.targets[valid]].sum())
    assert result["tokens"] == int(valid.sum()) and result["bytes"] == n_bytes
    assert result["loss"] == pytest.approx(float(losses.sum() / valid.sum()), rel=1e-5)
    assert result["bpb"] == pytest.approx(float(losses.sum()) / math.log(2) / n_bytes, rel=1e-5)


def test_trainer_evaluates_and_keeps_the_last_checkpoints(tmp_path):
    data = _data()
    trainer = Trainer(_model(0), _config(steps=6, eval_every=3, eval_batches=2, checkpoint_every=2,
                                         keep_checkpoints=2), data, val_data=_data(seed=5, n_docs=20),
                      run_dir=tmp_path)
    trainer.fit()
    assert [e["step"] for e in trainer.evals] == [3, 6]
    assert all(math.isnan(e["bpb"]) and e["loss"] > 0 for e in trainer.evals)   # no byte counts given
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000004", "step_000006"]


def test_average_of_the_last_k_checkpoints_is_the_mean_of_their_weights(tmp_path):
    trainer = Trainer(_model(0), _config(steps=6, checkpoint_every=2), _data(), run_dir=tmp_path)
    trainer.fit()
    paths = list_checkpoints(tmp_path)[-2:]
    states = []
    for p in paths:
        m = _model(9)
        load_model(m, str(p / "model.safetensors"))
        states.append(m.state_dict())
    averaged = average_checkpoints(paths, out=tmp_path / "avg.safetensors")
    model = _model(9)
    load_model(model, str(tmp_path / "avg.safetensors"))
    for name, w in model.state_dict().items():
        torch.testing.assert_close(w, (states[0][name] + states[1][name]) / 2, rtol=0, atol=1e-7)
    assert set(averaged) <= set(model.state_dict())


def test_trainer_config_errors_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="micro_batch_size"):
        Trainer(_model(0), _config(micro_batch_size=3), _data())
    with pytest.raises(ValueError, match="max_seq_len"):
        Trainer(_model(0), _config(batch=BatchRamp.constant(2, 64)), _data())
    with pytest.raises(ValueError, match="run_dir"):
        Trainer(_model(0), _config(checkpoint_every=2), _data())
