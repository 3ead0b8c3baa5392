"""Tensor parallelism (Megatron): a Llama with GQA sharded over 2 ranks (2 query heads, 1 KV head, half the FFN units
each) gives one process's logits, and each rank's gradients are the matching slices of the single-process gradients
(replicated weights: the whole gradient), fp32 to 1e-5. The run is launched by ``test_parallel_launch.suite``."""

import pytest
import torch

from minillm.parallel import CommGroup, TensorParallelConfig, lm_loss, tp_allreduce_bytes
from test_parallel_launch import BATCH, CFG, SEQ, TOL, reference_batch, reference_model, suite

W = 2


def _reference():
    model = reference_model()
    tokens, targets = reference_batch()
    logits = model(tokens)
    lm_loss(logits, targets).backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters()}


def _expected_shard(name: str, full: torch.Tensor, rank: int) -> torch.Tensor:
    """The rows/columns rank ``rank`` should hold, from head and unit indices (not from the code under test)."""
    D, H, Hkv, F = CFG.head_dim, CFG.n_heads, CFG.n_kv_heads, CFG.ffn_dim
    if name.endswith("wqkv.weight"):
        q = [h for h in range(H) if h // (H // W) == rank]              # this rank's query heads
        kv = [h for h in range(Hkv) if h // (Hkv // W) == rank]         # ... and the KV heads they read
        assert all(h // (H // Hkv) in kv for h in q)
        rows = [h * D + i for h in q for i in range(D)]
        rows += [H * D + h * D + i for h in kv for i in range(D)]
        rows += [(H + Hkv) * D + h * D + i for h in kv for i in range(D)]
        return full[rows]
    if name.endswith("wo.weight"):
        return full[:, rank * H * D // W:(rank + 1) * H * D // W]
    if name.endswith("w13.weight"):
        units = list(range(rank * F // W, (rank + 1) * F // W))
        return full[units + [F + u for u in units]]                     # gate rows, then up rows
    if name.endswith("w2.weight"):
        return full[:, rank * F // W:(rank + 1) * F // W]
    return full                                                         # replicated


def test_tp_logits_equal_the_single_process_logits_on_both_ranks():
    _, tensors = suite(W)
    ref_logits, _ = _reference()
    for r in range(W):
        torch.testing.assert_close(tensors[r]["tp_logits"], ref_logits, **TOL)


def test_gqa_kv_heads_are_split_with_their_query_heads():
    _, tensors = suite(W)
    assert tensors[0]["tp_heads"] == (CFG.n_heads // W, CFG.n_kv_heads // W) == (2, 1)


def test_tp_gradients_are_slices_of_the_single_process_gradients():
    _, tensors = suite(W)
    _, ref = _reference()
    for r in range(W):
        got = tensors[r]["tp_grads"]
        assert got.keys() == ref.keys()
        for name, g in got.items():
            torch.testing.assert_close(g, _expected_shard(name, ref[name], r), **TOL, msg=f"rank {r} {name}")


def test_tp_all_reduces_two_activations_per_block_forward_and_two_backward():
    _, tensors = suite(W)
    expected = tp_allreduce_bytes(CFG, BATCH * SEQ)
    assert expected == 2 * 2 * CFG.n_layers * BATCH * SEQ * CFG.dim * 4
    assert tensors[0]["tp_bytes"] == tensors[1]["tp_bytes"] == expected


def test_tp_size_that_does_not_divide_the_kv_heads_is_refused():
    with pytest.raises(ValueError, match=r"ModelConfig.n_kv_heads \(2\) must be divisible by the tensor-parallel size"):
        TensorParallelConfig(4).check(CFG)
    with pytest.raises(ValueError, match="TensorParallelConfig.size"):
        TensorParallelConfig(0)


def test_a_group_of_one_is_the_plain_model():
    from minillm.parallel import shard_llama

    model = reference_model()
    tokens, _ = reference_batch()
    torch.testing.assert_close(shard_llama(model, CommGroup(0, 1))(tokens), model(tokens), rtol=0, atol=0)
