"""The Llama 3 decoder against independent references: plain formulas, PyTorch kernels, and invariances."""

import math

import pytest
import torch
import torch.nn.functional as F

from minillm import KVCache, Llama, ModelConfig, RopeScaling
from minillm.model import (RMSNorm, apply_rope, attention_ref, causal_mask, document_mask, rms_norm_ref,
                           rope_cos_sin, rope_frequencies, sdpa_attention)


def tiny(**kw) -> ModelConfig:
    base = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, vocab_size=101, max_seq_len=128)
    return ModelConfig.tiny(**{**base, **kw})


def model(seed=0, **kw) -> Llama:
    torch.manual_seed(seed)
    return Llama(tiny(**kw)).eval()


def test_rmsnorm_kernel_equals_the_formula():
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 16) * 4
    torch.testing.assert_close(norm(x), rms_norm_ref(x, norm.weight, 1e-5))
    manual = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), manual)


def test_rope_scores_depend_only_on_the_relative_offset():
    inv_freq = rope_frequencies(32, theta=500_000.0).double()  # fp64 angles: exact up to rounding
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)

    def score(m, n):
        cq, sq = rope_cos_sin(torch.tensor([[m]]), inv_freq, torch.float64)
        ck, sk = rope_cos_sin(torch.tensor([[n]]), inv_freq, torch.float64)
        return (apply_rope(q.double(), cq, sq) * apply_rope(k.double(), ck, sk)).sum().item()

    for offset in (0, 3, 17):
        ref = score(offset, 0)
        for base in (5, 100, 4000):
            assert score(base + offset, base) == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert score(10, 0) != pytest.approx(score(0, 0))


def test_rope_preserves_vector_norms():
    x = torch.randn(2, 3, 7, 16)
    cos, sin = rope_cos_sin(torch.arange(7).expand(2, 7), rope_frequencies(16, 10_000.0), torch.float32)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


def test_llama31_scaling_keeps_high_frequencies_and_divides_low_ones_by_8():
    plain = rope_frequencies(128, 500_000.0)
    scaled = rope_frequencies(128, 500_000.0, RopeScaling())
    wavelen = 2 * math.pi / plain
    assert torch.equal(scaled[wavelen < 8192 / 4], plain[wavelen < 8192 / 4])
    torch.testing.assert_close(scaled[wavelen > 8192], plain[wavelen > 8192] / 8)
    mid = (wavelen >= 2048) & (wavelen <= 8192)
    assert mid.any() and torch.all(scaled[mid] <= plain[mid]) and torch.all(scaled[mid] >= plain[mid] / 8)


def test_llama31_scaling_matches_transformers():
    rope_utils = pytest.importorskip("transformers.modeling_rope_utils", reason="transformers not installed")
    from transformers import LlamaConfig

    hf = LlamaConfig(hidden_size=4096, num_attention_heads=32, rope_theta=500_000.0, max_position_embeddings=131072,
                     rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    inv_freq, _ = rope_utils.ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    torch.testing.assert_close(rope_frequencies(128, 500_000.0, RopeScaling()), inv_freq.float())


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("case", ["causal", "doc", "decode_padded", "chunk"])
def test_sdpa_path_equals_the_reference_formula(heads, kv_heads, case):
    torch.manual_seed(0)
    B, T, S, D = 2, 6, 6, 8
    if case == "decode_padded":
        T = 1
        mask = torch.ones(B, 1, 1, S, dtype=torch.bool)
        mask[0, ..., :2] = False
    elif case == "chunk":
        T, S = 3, 9
        mask = causal_mask(T, S)
    elif case == "doc":
        mask = document_mask(torch.tensor([[0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 1, 1]]))
    else:
        mask = None
    q, k, v = torch.randn(B, heads, T, D), torch.randn(B, kv_heads, S, D), torch.randn(B, kv_heads, S, D)
    causal = case == "causal"
    torch.testing.assert_close(sdpa_attention(q, k, v, mask, causal), attention_ref(q, k, v, mask, causal))


def test_reference_attention_is_softmax_of_scaled_scores_per_head():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8)
    out = attention_ref(q, k, v, is_causal=True)
    for h in range(2):
        s = q[0, h] @ k[0, h].T / math.sqrt(8)
        s = s.masked_fill(torch.ones(4, 4).triu(1).bool(), -torch.inf)
        torch.testing.assert_close(out[0, h], s.softmax(-1) @ v[0, h])


def test_sdpa_model_equals_reference_model():
    torch.manual_seed(0)
    a = Llama(tiny()).eval()
    b = Llama(tiny(), attn_impl="ref").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 101, (2, 12))
    docs = torch.tensor([[0] * 5 + [1] * 7, [0] * 12])
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a(x, docs), b(x, docs))


def test_gqa_with_as_many_kv_heads_as_heads_equals_mha():
    """A GQA model equals the MHA model whose K/V heads are copies of the shared ones (and MHA is just that)."""
    gqa = model(n_kv_heads=2)
    mha = model(n_kv_heads=4)
    assert mha.cfg.attention_type == "MHA" and gqa.cfg.attention_type == "GQA"
    state = gqa.state_dict()
    hd, group = 16, 2
    for i in range(2):
        w = state[f"layers.{i}.attention.wqkv.weight"]
        q, k, v = w.split([64, 32, 32])
        k = k.view(2, hd, 64).repeat_interleave(group, 0).reshape(64, 64)   # each KV head serves 2 query heads
        v = v.view(2, hd, 64).repeat_interleave(group, 0).reshape(64, 64)
        state[f"layers.{i}.attention.wqkv.weight"] = torch.cat([q, k, v])
    mha.load_state_dict(state)
    x = torch.randint(0, 101, (2, 10))
    torch.testing.assert_close(mha(x), gqa(x))


def test_mha_layer_equals_a_per_head_loop():
    m = model(n_kv_heads=4)
    attn, x = m.layers[0].attention, torch.randn(1, 5, 64)
    pos = torch.arange(5)[None]
    cos, sin = rope_cos_sin(pos, m.inv_freq, torch.float32)
    q, k, v = attn.wqkv(x).split(64, dim=-1)
    heads = []
    for h in range(4):
        sl = slice(16 * h, 16 * (h + 1))
        qh = apply_rope(q[..., sl][:, None], cos, sin)[0, 0]
        kh = apply_rope(k[..., sl][:, None], cos, sin)[0, 0]
        heads.append(F.softmax((qh @ kh.T / 4).masked_fill(torch.ones(5, 5).triu(1).bool(), -torch.inf), -1)
                     @ v[0, :, sl])
    torch.testing.assert_close(attn(x, cos, sin, is_causal=True)[0], attn.wo(torch.cat(heads, -1)))


def test_document_mask_blocks_cross_document_attention():
    m = model()
    x = torch.randint(0, 101, (1, 16))
    docs = torch.tensor([[0] * 6 + [1] * 10])
    y = x.clone()
    y[0, :6] = torch.randint(0, 101, (6,))                      # change document A only
    with torch.no_grad():
        masked_x, masked_y = m(x, docs), m(y, docs)
        plain_x, plain_y = m(x), m(y)
    torch.testing.assert_close(masked_x[0, 6:], masked_y[0, 6:])  # document B cannot see A
    assert not torch.allclose(plain_x[0, 6:], plain_y[0, 6:])     # without the mask it can
    # and document B alone at its own positions gives the same logits (RoPE is relative)
    torch.testing.assert_close(masked_x[0, 6:], m(x[:, 6:])[0], atol=1e-5, rtol=1e-4)


def test_document_mask_shape_and_validation():
    mask = document_mask(torch.tensor([[0, 0, 1]]))
    assert mask.shape == (1, 1, 3, 3)
    assert mask[0, 0].tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    with pytest.raises(ValueError, match="doc_ids"):
        document_mask(torch.zeros(3))
    with pytest.raises(ValueError, match="doc_ids shape"):
        model()(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))


def test_llama_parameter_count_matches_the_config():
    for kw in ({}, {"tie_embeddings": True}, {"n_kv_heads": 1}):
        m = model(**kw)
        assert sum(p.numel() for p in m.parameters()) == m.cfg.num_params()


def test_cached_prefill_and_decode_equal_the_full_forward():
    m = model()
    x = torch.randint(0, 101, (2, 11))
    full = m(x)
    cache = m.new_cache(2, 16)
    with torch.no_grad():
        pre = m(x[:, :7], cache=cache, start=0)
        steps = [m(x[:, t:t + 1], cache=cache, start=t) for t in range(7, 9)]
        chunk = m(x[:, 9:], cache=cache, start=9)                  # chunked prefill: offset causal mask
    torch.testing.assert_close(torch.cat([pre, *steps, chunk], 1), full, atol=1e-5, rtol=1e-4)


def test_static_cache_slots_equal_the_dynamic_cache():
    m = model()
    x = torch.randint(0, 101, (1, 8))
    dyn, static = m.new_cache(1, 12), m.new_cache(1, 12)
    with torch.no_grad():
        m(x[:, :7], cache=dyn, start=0)
        m(x[:, :7], cache=static, start=0)
        a = m(x[:, 7:], cache=dyn, start=7)
        valid = torch.zeros(1, 1, 1, 12, dtype=torch.bool)
        valid[..., :8] = True                                       # unfilled slots masked: shapes never change
        b = m(x[:, 7:], cache=static, start=torch.tensor([7]), positions=torch.tensor([[7]]), mask=valid)
    torch.testing.assert_close(a, b)


def test_full_cache_raises_instead_of_overwriting():
    m = model()
    cache = m.new_cache(1, 4)
    with pytest.raises(ValueError, match="KV cache is full"):
        m(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    assert KVCache(m.cfg, 2, 10).nbytes == m.cfg.kv_cache_bytes(10, 2, dtype=torch.float32)


def test_sequence_longer_than_max_seq_len_raises():
    with pytest.raises(ValueError, match="max_seq_len"):
        model()(torch.zeros(1, 129, dtype=torch.long))


@pytest.mark.parametrize("n_kv_heads", [1, 2, 8])
def test_matmul_decode_attention_equals_the_reference(n_kv_heads):
    from minillm.model.attention import decode_attention_matmul
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 8, 1, 16, generator=g)
    k, v = torch.randn(2, 3, n_kv_heads, 20, 16, generator=g)
    mask = torch.rand(3, 1, 1, 20, generator=g) > 0.3
    mask[..., 0] = True
    torch.testing.assert_close(decode_attention_matmul(q, k, v, mask), attention_ref(q, k, v, mask))
    torch.testing.assert_close(sdpa_attention(q, k, v, mask), attention_ref(q, k, v, mask))
