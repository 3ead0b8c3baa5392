"""Checkpoints survive crashes: ordering by step number, atomic fsynced saves, killed saves, truncated files."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.train import (BatchRamp, CheckpointError, LRSchedule, TrainConfig, Trainer, checkpoint_dir,
                           latest_checkpoint, list_checkpoints, load_checkpoint, pack_documents, save_checkpoint)
from minillm.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
FILES = ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]


def _model_and_optimizer(seed):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()                                                        # AdamW now has per-parameter state
    return model, optimizer


def _save(run, step, seed=0):
    model, optimizer = _model_and_optimizer(seed)
    return save_checkpoint(checkpoint_dir(run, step), model, optimizer, {"step": step})


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_checkpoints_are_ordered_by_step_number_past_one_million(tmp_path):
    for step in (1_000_000, 2, 999_999):
        _save(tmp_path, step)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000002", "step_999999", "step_1000000"]
    assert latest_checkpoint(tmp_path).name == "step_1000000"


def test_keeping_the_last_checkpoint_keeps_the_one_just_written_at_step_one_million(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32, vocab_size=32, max_seq_len=16)
    data = pack_documents([list(range(3, 30))] * 4, 1, 2)
    config = TrainConfig(steps=2_000_000, schedule=LRSchedule(1e-3, 1, 2_000_000, 1e-4),
                         batch=BatchRamp.constant(2, 8), micro_batch_size=2, progress=False, keep_checkpoints=1)
    trainer = Trainer(Llama(cfg), config, data, run_dir=tmp_path)
    for step in (999_999, 1_000_000):                                       # the LRSchedule.llama3 run gets there
        trainer.step = step
        trainer.save()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_1000000"]


def test_save_fsyncs_every_file_and_the_folder_before_renaming_it_into_place(tmp_path, fsynced_before_rename):
    path = _save(tmp_path, 4)
    fsynced_before_rename(path)


def test_a_failed_rename_keeps_the_previous_version_of_the_checkpoint(tmp_path, monkeypatch,
                                                                       fail_renames_of_temporaries):
    path = _save(tmp_path, 4, seed=0)
    before = _weights(_model_and_optimizer(0)[0])

    fail_renames_of_temporaries()
    with pytest.raises(OSError, match="injected"):
        _save(tmp_path, 4, seed=1)                                          # re-save the same step with new weights
    monkeypatch.undo()
    model, optimizer = _model_and_optimizer(7)
    load_checkpoint(path, model, optimizer)
    for name, w in model.state_dict().items():
        assert torch.equal(w, before[name]), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000004"]    # no temporary left behind


_CHILD = """
import sys, time, torch
from pathlib import Path
from minillm.train import checkpoint
run, ready = Path(sys.argv[1]), Path(sys.argv[2])
real = checkpoint.save_file
def slow(tensors, filename):                # the first file is written, then the process hangs until killed
    real(tensors, filename)
    ready.write_text("writing")
    time.sleep(120)
checkpoint.save_file = slow
model = torch.nn.Linear(4, 3)
checkpoint.save_checkpoint(checkpoint.checkpoint_dir(run, 8), model, torch.optim.AdamW(model.parameters()))
"""


def test_a_process_killed_mid_save_leaves_the_previous_checkpoint_to_resume_from(tmp_path):
    run, ready = tmp_path / "run", tmp_path / "ready"
    _save(run, 4, seed=0)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(run), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the saving process died before it was killed"
            assert time.monotonic() < deadline, "the saving process never started writing"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert latest_checkpoint(run).name == "step_000004"
    model, optimizer = _model_and_optimizer(7)
    assert load_checkpoint(latest_checkpoint(run), model, optimizer)["step"] == 4
    assert torch.equal(model.weight, _model_and_optimizer(0)[0].weight)
    _save(run, 6)                                                           # the next save clears the dead one's
    assert sorted(p.name for p in run.iterdir()) == ["step_000004", "step_000006"]


def _truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", FILES)
def test_a_checkpoint_with_a_truncated_file_is_skipped_and_resume_uses_the_previous_one(tmp_path, caplog, name):
    _save(tmp_path, 2)
    _truncate(_save(tmp_path, 4) / name)
    with caplog.at_level(logging.WARNING, logger="minillm.train.checkpoint"):
        assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000002"]
    assert "step_000004" in caplog.text and name in caplog.text
    assert latest_checkpoint(tmp_path).name == "step_000002"


@pytest.mark.parametrize("name", FILES)
def test_loading_a_truncated_checkpoint_names_the_file_and_changes_nothing(tmp_path, name):
    path = _save(tmp_path, 4, seed=0)
    _truncate(path / name)
    model, optimizer = _model_and_optimizer(1)
    weights, opt_state, rng = _weights(model), optimizer.state_dict(), torch.get_rng_state()
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(path, model, optimizer)
    for key, w in model.state_dict().items():
        assert torch.equal(w, weights[key]), key
    for idx, slots in optimizer.state_dict()["state"].items():
        for key, value in slots.items():
            assert torch.equal(value, opt_state["state"][idx][key]), (idx, key)
    assert torch.equal(torch.get_rng_state(), rng)


def test_loading_into_a_model_of_another_shape_names_the_file_and_changes_nothing(tmp_path):
    path = _save(tmp_path, 4)
    torch.manual_seed(3)
    other = torch.nn.Linear(4, 5)
    before = _weights(other)
    with pytest.raises(CheckpointError, match="model.safetensors does not match the model"):
        load_checkpoint(path, other)
    assert all(torch.equal(w, before[k]) for k, w in other.state_dict().items())
    assert ckpt.check_checkpoint(path)["step"] == 4
