"""Data parallelism: 2 and 4 ranks, each with its share of the batch, give one process's gradients and weights, with
the hand-written bucketed all-reduce and with DDP (fp32, 1e-5). The runs are launched by
``test_parallel_launch.suite``."""

import pytest
import torch

from minillm.parallel import DataParallelConfig, lm_loss, shard_batch
from minillm.parallel.data_parallel import buckets
from test_parallel_launch import LR, TOL, reference_batch, reference_model, suite


def _reference_grads():
    model = reference_model()
    tokens, targets = reference_batch()
    lm_loss(model(tokens), targets).backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("world", [2, 4])
def test_hand_written_allreduce_gives_the_single_process_gradients_on_every_rank(world):
    _, tensors = suite(world)
    ref = _reference_grads()
    for r in range(world):
        got = tensors[r]["dp_manual"]
        assert got.keys() == ref.keys()
        for name in ref:
            torch.testing.assert_close(got[name], ref[name], **TOL, msg=f"rank {r} {name}")


@pytest.mark.parametrize("world", [2, 4])
def test_ddp_and_the_hand_written_allreduce_agree(world):
    _, tensors = suite(world)
    for r in range(world):
        for name, g in tensors[r]["dp_ddp"].items():
            torch.testing.assert_close(g, tensors[r]["dp_manual"][name], **TOL, msg=f"rank {r} {name}")


def test_two_adamw_steps_on_two_ranks_leave_the_single_process_weights():
    _, tensors = suite(2)
    model = reference_model()
    tokens, targets = reference_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        lm_loss(model(tokens), targets).backward()
        opt.step()
    for r in range(2):
        for name, w in model.state_dict().items():
            torch.testing.assert_close(tensors[r]["dp_weights"][name], w, **TOL, msg=f"rank {r} {name}")


def test_buckets_keep_order_and_respect_the_size():
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (10, 10, 30, 5, 5)]
    groups = buckets(params, bucket_bytes=80)                   # 20 floats per bucket
    assert [[p.numel() for p in g] for g in groups] == [[10, 10], [30], [5, 5]]


def test_shard_batch_and_config_errors_say_what_to_fix():
    assert shard_batch(torch.arange(8), 1, 4).tolist() == [2, 3]
    with pytest.raises(ValueError, match="multiple of 3"):
        shard_batch(torch.arange(8), 0, 3)
    with pytest.raises(ValueError, match="DataParallelConfig.bucket_mb"):
        DataParallelConfig(bucket_mb=0)
