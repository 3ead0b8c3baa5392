"""ModelConfig: the report's model sizes, and clear errors for configs that cannot work."""

import pytest
import torch

from minillm import ModelConfig, RopeScaling


@pytest.mark.parametrize(
    "preset, expected",
    [(ModelConfig.llama3_8b, 8.03e9), (ModelConfig.llama3_70b, 70.6e9), (ModelConfig.llama3_405b, 405.9e9)],
)
def test_presets_match_the_released_parameter_counts(preset, expected):
    assert abs(preset().num_params() / expected - 1) < 0.005


def test_presets_follow_table_3_of_the_report():
    for cfg in (ModelConfig.llama3_8b(), ModelConfig.llama3_70b(), ModelConfig.llama3_405b()):
        assert cfg.vocab_size == 128_256
        assert cfg.rope_theta == 500_000
        assert cfg.n_kv_heads == 8
        assert cfg.head_dim == 128
        assert cfg.attention_type == "GQA"
        assert cfg.rope_scaling == RopeScaling(factor=8, low_freq_factor=1, high_freq_factor=4, original_max_seq_len=8192)


def test_num_params_counts_a_built_module_by_hand():
    cfg = ModelConfig.tiny()
    d, f, v = cfg.dim, cfg.ffn_dim, cfg.vocab_size
    kv = cfg.n_kv_heads * cfg.head_dim
    layer = d * d + 2 * d * kv + d * d + 3 * d * f + 2 * d
    assert cfg.num_params() == v * d + cfg.n_layers * layer + d + v * d
    assert cfg.num_params(include_embedding=False) == cfg.num_params() - v * d
    tied = cfg.replace(tie_embeddings=True)
    assert tied.num_params() == cfg.num_params() - v * d
    assert tied.num_params(include_embedding=False) == tied.num_params()


def test_kv_cache_bytes_for_llama3_8b_is_128_kib_per_token_in_bf16():
    cfg = ModelConfig.llama3_8b()
    assert cfg.kv_cache_bytes(1) == 2 * 32 * 8 * 128 * 2 == 128 * 1024
    assert cfg.kv_cache_bytes(4096, batch_size=16, dtype=torch.float32) == 4096 * 16 * 2 * cfg.kv_cache_bytes(1)


def test_kv_cache_shrinks_with_fewer_kv_heads():
    mha = ModelConfig.llama3_8b(n_kv_heads=32)
    mqa = ModelConfig.llama3_8b(n_kv_heads=1)
    gqa = ModelConfig.llama3_8b()
    assert (mha.attention_type, mqa.attention_type) == ("MHA", "MQA")
    assert mha.kv_cache_bytes(1) == 4 * gqa.kv_cache_bytes(1) == 32 * mqa.kv_cache_bytes(1)


def test_flops_per_token_is_6n_plus_the_attention_term():
    cfg = ModelConfig.llama3_405b()
    n = cfg.num_params(include_embedding=False)
    assert cfg.flops_per_token(8192) == 6 * n + 12 * 126 * 128 * 128 * 8192
    assert cfg.flops_per_token(8192, training=False) == pytest.approx(cfg.flops_per_token(8192) / 3)
    # the report's 3.8e25 FLOPs for 405B on 15.6T tokens is 6ND to within 1%
    assert 6 * cfg.num_params() * 15.6e12 == pytest.approx(3.8e25, rel=0.01)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(n_heads=32, n_kv_heads=6), "n_kv_heads"),
        (dict(dim=4096, n_heads=32, head_dim=127), "head_dim"),
        (dict(dim=4097), "dim"),
        (dict(n_layers=0), "n_layers"),
        (dict(ffn_dim=-1), "ffn_dim"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(rope_theta=0.0), "rope_theta"),
        (dict(n_heads=2.5), "n_heads"),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig.llama3_8b(**overrides)


@pytest.mark.parametrize("field", ["rope_theta", "norm_eps"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e-5, True, "1e-5"])
def test_rope_theta_and_norm_eps_must_be_finite_positive_numbers(field, value):
    with pytest.raises(ValueError, match=f"ModelConfig.{field} must be a finite positive number"):
        ModelConfig.tiny(**{field: value})


def test_an_integer_rope_theta_is_stored_as_a_float():
    assert ModelConfig.tiny(rope_theta=10_000).rope_theta == 10_000.0


@pytest.mark.parametrize("field", ["factor", "low_freq_factor", "high_freq_factor"])
def test_a_nan_rope_scaling_factor_raises_naming_it(field):
    with pytest.raises(ValueError, match=f"RopeScaling.{field} must be a finite positive number"):
        RopeScaling(**{field: float("nan")})


def test_rope_scaling_validates_and_accepts_a_dict():
    with pytest.raises(ValueError, match="high_freq_factor"):
        RopeScaling(low_freq_factor=4, high_freq_factor=1)
    cfg = ModelConfig.tiny(rope_scaling=dict(factor=8.0))
    assert cfg.rope_scaling == RopeScaling(factor=8.0)


def test_replace_revalidates_and_recomputes_head_dim():
    cfg = ModelConfig.tiny()
    assert cfg.replace(n_heads=4, n_kv_heads=4).head_dim == cfg.dim // 4
    with pytest.raises(ValueError, match="n_kv_heads"):
        cfg.replace(n_kv_heads=3)
