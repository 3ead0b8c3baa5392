"""PagedAttention (vLLM §4.1) against dense attention (``attention_ref``) on random block layouts."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minillm.infer.paged_attention import (gather_kv, paged_decode_attention, paged_decode_attention_torch,
                                           paged_prefill_attention_torch, slots_for, triton_available, write_kv)
from minillm.model.attention import attention_ref, causal_mask


def scattered(lengths, n_kv_heads=2, head_dim=16, block_size=4, dtype=torch.float32, device="cpu", seed=0):
    """Dense keys/values per sequence, written into a shuffled pool. Returns pools, tables (B, M), dense k/v."""
    g = torch.Generator().manual_seed(seed)
    M = max(-(-n // block_size) for n in lengths)
    num_blocks = len(lengths) * M + 3
    perm = torch.randperm(num_blocks, generator=g).tolist()          # physical blocks in random order
    k_pool = torch.zeros(num_blocks, block_size, n_kv_heads, head_dim, dtype=dtype, device=device)
    v_pool = torch.zeros_like(k_pool)
    tables, dense = [], []
    for i, n in enumerate(lengths):
        table = perm[i * M:(i + 1) * M]
        k = torch.randn(n, n_kv_heads, head_dim, generator=g).to(dtype=dtype, device=device)
        v = torch.randn(n, n_kv_heads, head_dim, generator=g).to(dtype=dtype, device=device)
        slots = torch.tensor(slots_for(table, 0, n, block_size), device=device)
        write_kv(k_pool, v_pool, k, v, slots)
        tables.append(table)
        dense.append((k, v))
    return k_pool, v_pool, torch.tensor(tables, dtype=torch.int32, device=device), dense


def dense_decode(q, dense):
    """Reference: each sequence alone, its last position attending to all its keys."""
    outs = []
    for i, (k, v) in enumerate(dense):
        out = attention_ref(q[i][None, :, None], k.transpose(0, 1)[None], v.transpose(0, 1)[None])  # (1, H, 1, D)
        outs.append(out[0, :, 0])
    return torch.stack(outs)


def test_gather_through_the_block_table_returns_each_sequence_in_order():
    k_pool, _, tables, dense = scattered([5, 9, 1])
    got = gather_kv(k_pool, tables)                                   # (B, M·bs, Hkv, D)
    for i, (k, _) in enumerate(dense):
        torch.testing.assert_close(got[i, :k.shape[0]], k, rtol=0, atol=0)


@pytest.mark.parametrize("n_heads", [2, 4, 8])                       # MHA and two GQA groupings
def test_paged_decode_equals_dense_attention_on_random_block_layouts(n_heads):
    lengths = [1, 7, 16, 33]
    k_pool, v_pool, tables, dense = scattered(lengths, seed=n_heads)
    q = torch.randn(len(lengths), n_heads, 16)
    got = paged_decode_attention_torch(q, k_pool, v_pool, tables, torch.tensor(lengths))
    torch.testing.assert_close(got, dense_decode(q, dense), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("q_len", [1, 5, 13])
def test_a_paged_prefill_chunk_equals_causal_attention_over_its_prefix(q_len):
    k_pool, v_pool, tables, dense = scattered([13], seed=q_len)
    k, v = dense[0]
    q = torch.randn(q_len, 4, 16)
    got = paged_prefill_attention_torch(q, k_pool, v_pool, tables[0], 13)
    ref = attention_ref(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                        mask=causal_mask(q_len, 13))[0].transpose(0, 1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_decode_dispatch_rejects_an_unknown_impl():
    k_pool, v_pool, tables, _ = scattered([3])
    with pytest.raises(ValueError, match="impl"):
        paged_decode_attention(torch.randn(1, 2, 16), k_pool, v_pool, tables, torch.tensor([3]), impl="cuda")


@pytest.mark.skipif(not triton_available(torch.device("cuda")) or not torch.cuda.is_available(),
                    reason="the Triton kernel needs CUDA and triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lengths,n_heads,splits", [([1, 7, 16, 33], 8, None), ([300, 1000, 17], 32, 3),
                                                    ([4096], 32, None)])
def test_triton_decode_kernel_equals_dense_attention(dtype, lengths, n_heads, splits):
    from minillm.infer.paged_attention_triton import paged_decode_attention_triton

    k_pool, v_pool, tables, dense = scattered(lengths, n_kv_heads=8 if n_heads == 32 else 2, head_dim=128,
                                              block_size=16, dtype=dtype, device="cuda")
    q = torch.randn(len(lengths), n_heads, 128, device="cuda").to(dtype)
    got = paged_decode_attention_triton(q, k_pool, v_pool, tables, torch.tensor(lengths, device="cuda"),
                                        num_splits=splits)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), dense_decode(q, dense).float(), rtol=tol, atol=tol)


_INTERPRET_CHECK = """
import sys, torch
sys.path.insert(0, "tests")
from test_infer_paged_attention import scattered, dense_decode
from minillm.infer.paged_attention_triton import paged_decode_attention_triton
worst = 0.0
# (lengths, query heads, splits, max_context the grid is sized for): the last two are a graph's fixed grid, sized for
# far longer contexts than the sequences have, so each sequence's own length must be what gets split
for lengths, heads, splits, max_context in [([1, 7, 16, 33], 8, None, None), ([300, 100, 17], 32, 3, None),
                                            ([200], 32, None, 4096), ([5, 130, 1], 32, 4, 2048)]:
    k_pool, v_pool, tables, dense = scattered(lengths, n_kv_heads=8 if heads == 32 else 2, head_dim=128,
                                              block_size=16)
    q = torch.randn(len(lengths), heads, 128)
    got = paged_decode_attention_triton(q, k_pool, v_pool, tables, torch.tensor(lengths), max_context=max_context,
                                        num_splits=splits)
    worst = max(worst, (got - dense_decode(q, dense)).abs().max().item())
print(worst)
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None or torch.cuda.is_available(),
                    reason="needs the triton package; with a GPU the compiled kernel is checked instead")
def test_triton_decode_kernel_in_the_interpreter_equals_dense_attention():
    """The kernel under ``TRITON_INTERPRET=1`` on CPU tensors (the flag must be set before triton is imported, hence
    the subprocess), for machines with triton but no GPU. (Triton 3.9's interpreter runs it; older interpreters
    cannot take a loop bound that was loaded from memory, which the compiled kernel handles.)"""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", _INTERPRET_CHECK], env=env, capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split()[-1]) < 1e-5
