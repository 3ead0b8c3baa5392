"""Data parallelism: the trainer under ``torchrun --nproc-per-node 2`` (DDP, gloo, CPU) traces the same loss curve as
one process with the same global batch (report §3.3.2's data parallelism, at our scale).

The test launches this file with ``python -m torch.distributed.run``; run as a script it is the worker."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_model

from minillm import Llama, ModelConfig
from minillm.train import BatchRamp, LRSchedule, RampStage, TrainConfig, Trainer, init_distributed, pack_documents

CFG = ModelConfig.tiny(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=64, max_seq_len=32)


def _run(micro_batch_size: int, out: Path | None = None) -> list[float]:
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(3, 64, (int(torch.randint(4, 30, (1,), generator=g)),), generator=g).tolist()
            for _ in range(80)]
    data = pack_documents(docs, 1, 2)
    ramp = BatchRamp((RampStage(0, 4 * 8, 8), RampStage(96, 8 * 16, 16)))    # 4 × 8, then 8 × 16 tokens
    cfg = TrainConfig(steps=6, schedule=LRSchedule(1e-2, 2, 6, 1e-3), batch=ramp, micro_batch_size=micro_batch_size,
                      progress=False)
    torch.manual_seed(0)
    trainer = Trainer(Llama(CFG), cfg, data)
    trainer.fit()
    losses = [row["loss"] for row in trainer.history]
    if out is not None and trainer.rank == 0:
        save_model(trainer.model, str(out / "model.safetensors"))
        (out / "losses.json").write_text(json.dumps({"losses": losses, "world": trainer.world}))
    return losses


def test_two_ddp_processes_match_one_process_with_the_same_global_batch(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           __file__, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "losses.json").read_text())
    assert result["world"] == 2
    # one process: the whole global batch, split into other micro-batches (2 rows each) than the ranks used (1)
    (tmp_path / "single").mkdir()
    single = _run(micro_batch_size=2, out=tmp_path / "single")
    torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(single), rtol=1e-5, atol=0)
    assert single[-1] < single[0]
    single_weights = load_file(str(tmp_path / "single" / "model.safetensors"))
    for name, w in load_file(str(tmp_path / "model.safetensors")).items():
        torch.testing.assert_close(w, single_weights[name], rtol=1e-4, atol=1e-5)


if __name__ == "__main__":                                                 # a torchrun worker
    torch.set_num_threads(1)
    rank, world = init_distributed("gloo")
    _run(micro_batch_size=1, out=Path(sys.argv[1]))
    torch.distributed.destroy_process_group()
