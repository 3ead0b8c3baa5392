"""Quantization (report §6.2, seed §4.2): INT8 absmax and FP8 row-wise against their formulas, the emulated matmuls
against dequantize-then-matmul references (and against the GPU kernels where they run), and the report's policy."""

import doctest
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import minillm.quant.int8
from minillm import Llama, ModelConfig
from minillm.quant import (FP8_DTYPE, FP8_MAX, Fp8Linear, Int8Linear, QuantConfig, dequantize_fp8, dequantize_int8,
                           fp8_matmul, int8_matmul, quantize_fp8_rowwise, quantize_int8_absmax, quantize_model,
                           scaled_mm_supported)
from minillm.quant.fp8 import reference_linear

E4M3_HALF_ULP = 2.0 ** -4        # 3 mantissa bits: relative rounding error of normal numbers is at most 2^-4
E4M3_SUBNORMAL_HALF_STEP = 2.0 ** -10  # subnormals are spaced 2^-9 apart


def rel_norm(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


# ----------------------------------------------------------------------------- INT8 absmax

def test_seed_worked_example_doctest_passes():
    result = doctest.testmod(minillm.quant.int8)
    assert result.attempted >= 4 and result.failed == 0


@pytest.mark.parametrize("dim", [None, -1, 0])
def test_int8_round_trip_error_is_at_most_half_a_step(dim):
    x = torch.randn(64, 96) * torch.logspace(-2, 2, 96)                 # columns of very different magnitudes
    q, scale = quantize_int8_absmax(x, dim=dim)
    step = 1.0 / scale                                                  # one int8 level in x's units
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 127
    err = (dequantize_int8(q, scale) - x).abs()
    assert (err <= step / 2 * (1 + 1e-5)).all()


def test_int8_absmax_maps_each_rows_largest_magnitude_to_127():
    x = torch.tensor([[0.1, -2.0, 1.0], [3.0, 0.0, -1.5]])
    q, scale = quantize_int8_absmax(x, dim=-1)
    assert scale.shape == (2, 1)
    assert q.tolist() == [[6, -127, 64], [127, 0, -64]]                # round-half-even: -63.5 -> -64


def test_int8_all_zero_rows_give_zero_codes_and_finite_scales():
    x = torch.zeros(3, 8)
    x[1] = torch.linspace(-1, 1, 8)
    q, scale = quantize_int8_absmax(x, dim=-1)
    assert torch.isfinite(scale).all()
    assert (q[0] == 0).all() and (q[2] == 0).all()
    assert torch.equal(dequantize_int8(q, scale)[0], torch.zeros(8))
    q0, s0 = quantize_int8_absmax(torch.zeros(5))
    assert torch.isfinite(s0) and (q0 == 0).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("quantize", [quantize_int8_absmax, quantize_fp8_rowwise])
def test_nan_or_inf_input_raises_a_clear_value_error(quantize, bad):
    x = torch.randn(4, 16)
    x[2, 3] = bad
    with pytest.raises(ValueError, match="NaN/inf"):
        quantize(x)


def test_int8_matmul_emulation_equals_the_int8_kernel_and_exact_integers():
    a = torch.randint(-127, 128, (32, 64), dtype=torch.int8)
    b = torch.randint(-127, 128, (48, 64), dtype=torch.int8)
    exact = a.long() @ b.long().t()
    emulated = int8_matmul(a, b, impl="emulate")
    assert emulated.dtype == torch.int32 and torch.equal(emulated.long(), exact)
    assert torch.equal(int8_matmul(a, b, impl="kernel").long(), exact)  # torch._int_mm also runs on CPU


def test_int8_weight_only_linear_equals_linear_with_dequantized_weight():
    lin = nn.Linear(64, 40, bias=False)
    x = torch.randn(2, 5, 64)
    q, scale = quantize_int8_absmax(lin.weight.detach(), dim=-1)
    ref = F.linear(x, dequantize_int8(q, scale))
    out = Int8Linear.from_linear(lin, "none")(x)
    assert out.shape == (2, 5, 40)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_int8_dynamic_linear_equals_dequantized_weights_times_dequantized_tokens():
    lin = nn.Linear(64, 40, bias=False)
    x = torch.randn(2, 5, 64)
    qw, sw = quantize_int8_absmax(lin.weight.detach(), dim=-1)
    qx, sx = quantize_int8_absmax(x, dim=-1)                            # one scale per token
    ref = F.linear(dequantize_int8(qx, sx), dequantize_int8(qw, sw))
    out = Int8Linear.from_linear(lin, "dynamic")(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert rel_norm(out, lin(x)) < 0.02


# ----------------------------------------------------------------------------- FP8 row-wise

def test_fp8_relative_error_is_within_e4m3_precision():
    x = torch.randn(32, 256) * torch.logspace(-3, 3, 32)[:, None]       # rows spanning six orders of magnitude
    q, scale = quantize_fp8_rowwise(x, scale_ub=None)
    assert q.dtype == FP8_DTYPE and scale.shape == (32, 1)
    assert float(q.float().abs().amax(dim=-1).min()) == FP8_MAX         # each row's max maps to 448
    err = (dequantize_fp8(q, scale) - x).abs()
    bound = torch.maximum(E4M3_HALF_ULP * x.abs(), E4M3_SUBNORMAL_HALF_STEP / scale)  # normal / subnormal rounding
    assert (err <= bound * (1 + 1e-6)).all()


def test_fp8_all_zero_rows_do_not_divide_by_zero():
    x = torch.zeros(3, 16)
    x[1] = torch.randn(16)
    q, scale = quantize_fp8_rowwise(x)
    assert torch.isfinite(scale).all()
    deq = dequantize_fp8(q, scale)
    assert torch.isfinite(deq).all() and torch.equal(deq[0], torch.zeros(16))


def test_fp8_scale_cap_bounds_the_row_absmax_and_saturates_what_is_above_it():
    x = torch.tensor([[5000.0, 1.0, -3.0, 0.5], [2.0, -1.0, 0.25, 0.0]])
    q, scale = quantize_fp8_rowwise(x, scale_ub=1200.0)
    assert float(scale[0]) == pytest.approx(448 / 1200)                 # capped: 448 / min(5000, 1200)
    assert float(scale[1]) == pytest.approx(448 / 2.0)                  # rows under the cap are unaffected
    deq = dequantize_fp8(q, scale)
    assert float(deq[0, 0]) == pytest.approx(1200.0)                    # the outlier saturates at the cap
    torch.testing.assert_close(deq[0, 1:], x[0, 1:], rtol=E4M3_HALF_ULP, atol=0)


def test_fp8_scale_cap_keeps_small_values_from_underflowing_next_to_an_outlier():
    # the report's failure mode: one huge activation pushes the rest of its row below e4m3's smallest subnormal
    x = torch.tensor([[1e5] + [0.01] * 15])
    uncapped = dequantize_fp8(*quantize_fp8_rowwise(x, scale_ub=None))
    capped = dequantize_fp8(*quantize_fp8_rowwise(x, scale_ub=1200.0))
    assert (uncapped[0, 1:] == 0).all()                                 # 0.01 · 448/1e5 = 4.5e-5 < 2^-9: underflow
    assert (capped[0, 1:] != 0).all()
    torch.testing.assert_close(capped[0, 1:], x[0, 1:], rtol=0.1, atol=0)  # subnormal codes: coarser, but alive


def test_fp8_invalid_scale_ub_is_rejected():
    with pytest.raises(ValueError, match="scale_ub"):
        quantize_fp8_rowwise(torch.ones(2, 2), scale_ub=0.0)


def test_fp8_matmul_emulation_equals_dequantize_then_matmul():
    a, b = torch.randn(24, 64) * 3, torch.randn(40, 64)
    (qa, sa), (qb, sb) = quantize_fp8_rowwise(a), quantize_fp8_rowwise(b, None)
    ref = dequantize_fp8(qa, sa) @ dequantize_fp8(qb, sb).t()
    out = fp8_matmul(qa, sa, qb, sb, out_dtype=torch.float32, impl="emulate")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert fp8_matmul(qa, sa, qb, sb).dtype == torch.bfloat16            # bf16 out by default, like the kernel


def test_fp8_linear_equals_reference_quantize_dequantize_linear():
    lin = nn.Linear(64, 48, bias=False)
    x = torch.randn(3, 7, 64)
    out = Fp8Linear.from_linear(lin)(x)                                  # fp32 input -> fp32 output
    assert out.shape == (3, 7, 48) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference_linear(x, lin.weight.detach()), rtol=1e-5, atol=1e-5)
    assert rel_norm(out, lin(x)) < 0.06


def test_quantized_linear_refuses_weights_cast_back_to_floating_point():
    m = Fp8Linear.from_linear(nn.Linear(16, 16, bias=False)).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="quantize after"):
        m(torch.randn(2, 16, dtype=torch.bfloat16))


cuda_fp8 = pytest.mark.skipif(not scaled_mm_supported(), reason="needs a CUDA GPU with FP8 (compute capability >= 8.9)")


@cuda_fp8
@pytest.mark.parametrize("fast_accum", [False, True])
def test_fp8_emulation_equals_scaled_mm_on_gpu(fast_accum):
    torch.manual_seed(0)
    a = torch.randn(256, 512, device="cuda", dtype=torch.bfloat16) * 4
    w = torch.randn(384, 512, device="cuda", dtype=torch.bfloat16) * 0.02
    (qa, sa), (qw, sw) = quantize_fp8_rowwise(a), quantize_fp8_rowwise(w, None)
    kernel = fp8_matmul(qa, sa, qw, sw, torch.bfloat16, impl="kernel", fast_accum=fast_accum)
    emulated = fp8_matmul(qa, sa, qw, sw, torch.bfloat16, impl="emulate")
    torch.testing.assert_close(kernel.float(), emulated.float(), rtol=2e-2, atol=1e-2 * float(emulated.abs().max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_int8_kernel_equals_emulation_on_gpu():
    a = torch.randint(-127, 128, (64, 256), dtype=torch.int8, device="cuda")
    b = torch.randint(-127, 128, (128, 256), dtype=torch.int8, device="cuda")
    assert torch.equal(int8_matmul(a, b, impl="kernel"), int8_matmul(a, b, impl="emulate"))


# ----------------------------------------------------------------------------- policy

def test_quantize_model_default_policy_is_ffn_only_without_first_and_last_blocks():
    model = Llama(ModelConfig.tiny())                                   # 4 blocks
    report = quantize_model(model, "fp8_rowwise")
    assert report.replaced == ["layers.1.feed_forward.w13", "layers.1.feed_forward.w2",
                               "layers.2.feed_forward.w13", "layers.2.feed_forward.w2"]
    assert report.skipped["layers.0.feed_forward.w13"].startswith("first/last")
    assert report.skipped["layers.1.attention.wqkv"].startswith("attention")
    for i, block in enumerate(model.layers):
        assert isinstance(block.feed_forward.w13, Fp8Linear) == (i in (1, 2))
        assert isinstance(block.attention.wqkv, nn.Linear) and isinstance(block.attention.wo, nn.Linear)
    assert isinstance(model.output, nn.Linear)
    assert 0.24 < report.bytes_after / report.bytes_before < 0.27      # fp32 -> fp8 + one fp32 scale per row


def test_quantize_model_every_choice_is_configurable_and_already_quantized_linears_are_kept():
    model = Llama(ModelConfig.tiny())
    quantize_model(model, "int8_dynamic")
    report = quantize_model(model, "int8_weight", skip_first_last=False, include_attention=True)
    assert len(report.replaced) == 4 * 4 - 4                            # 4 blocks × 4 linears, minus the 4 done
    assert report.skipped["layers.1.feed_forward.w2"] == "already Int8Linear"
    assert model.layers[1].feed_forward.w2.activations == "dynamic"
    assert model.layers[0].attention.wqkv.activations == "none"
    only_attention = quantize_model(Llama(ModelConfig.tiny()), QuantConfig("fp8_rowwise", include_ffn=False,
                                                                           include_attention=True))
    assert all("attention" in name for name in only_attention.replaced) and len(only_attention.replaced) == 4


@pytest.mark.parametrize("kwargs,field", [(dict(scheme="int4"), "scheme"), (dict(scale_ub=-1.0), "scale_ub"),
                                          (dict(impl="triton"), "impl"),
                                          (dict(include_ffn=False, include_attention=False), "include_ffn")])
def test_quant_config_rejects_bad_fields_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        QuantConfig(**kwargs)


def test_quantize_model_rejects_a_model_without_blocks():
    with pytest.raises(ValueError, match="minillm.Llama"):
        quantize_model(nn.Linear(4, 4), "fp8_rowwise")


@pytest.mark.parametrize("scheme,tol", [("int8_weight", 0.03), ("int8_dynamic", 0.04), ("fp8_rowwise", 0.1)])
def test_quantized_tiny_model_logits_stay_close(scheme, tol):
    torch.manual_seed(0)
    model = Llama(ModelConfig.tiny()).eval()
    tokens = torch.randint(0, 8192, (2, 32))
    with torch.no_grad():
        ref = model(tokens)
        quantize_model(model, scheme, skip_first_last=False, include_attention=True)  # the harshest policy
        out = model(tokens)
    assert rel_norm(out, ref) < tol                                     # random weights: errors compound over 4 blocks


class FakeQuantLinear(nn.Module):
    """The slow reference: quantize-dequantize weight and input in fp32, then ``F.linear``."""

    def __init__(self, linear):
        super().__init__()
        self.weight = linear.weight

    def forward(self, x):
        return reference_linear(x, self.weight)


def test_fp8_model_equals_a_model_of_quantize_dequantize_reference_linears():
    torch.manual_seed(0)
    model = Llama(ModelConfig.tiny()).eval()
    reference = Llama(ModelConfig.tiny()).eval()
    reference.load_state_dict(model.state_dict())
    for block in reference.layers[1:3]:
        block.feed_forward.w13 = FakeQuantLinear(block.feed_forward.w13)
        block.feed_forward.w2 = FakeQuantLinear(block.feed_forward.w2)
    quantize_model(model, "fp8_rowwise")
    tokens = torch.randint(0, 8192, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- accuracy measures

def test_compare_logprobs_gives_perplexity_and_zero_kl_against_itself():
    from minillm.quant.accuracy import compare_logprobs, next_token_logprobs, perplexity

    torch.manual_seed(0)
    model = Llama(ModelConfig.tiny()).eval()
    tokens = torch.randint(0, 8192, (3, 17))
    logp = next_token_logprobs(model, tokens, batch_size=2)
    assert logp.shape == (3, 16, 8192)
    same = compare_logprobs(logp, tokens, logp)
    assert same["ppl"] == pytest.approx(perplexity(model, tokens), rel=1e-5)
    assert same["kl"] == pytest.approx(0.0, abs=1e-9) and same["top1_agree"] == 1.0
    quantize_model(model, "fp8_rowwise", skip_first_last=False, include_attention=True)
    moved = compare_logprobs(next_token_logprobs(model, tokens), tokens, logp)
    ref = torch.distributions.Categorical(logits=logp)
    new = torch.distributions.Categorical(logits=next_token_logprobs(model, tokens))
    assert moved["kl"] == pytest.approx(float(torch.distributions.kl_divergence(ref, new).mean()), rel=2e-3)
    assert moved["kl"] > 0 and 0 <= moved["top1_agree"] <= 1


@pytest.mark.parametrize("quantize", [quantize_int8_absmax, quantize_fp8_rowwise])
@pytest.mark.parametrize("x", [torch.arange(12).reshape(3, 4), torch.ones(3, 4, dtype=torch.int8),
                               torch.ones(3, 4, dtype=torch.bool)], ids=["int64", "int8", "bool"])
def test_integer_tensors_raise_a_type_error_naming_the_dtype(quantize, x):
    with pytest.raises(TypeError, match=f"floating-point tensor .* got {x.dtype}"):
        quantize(x)


@pytest.mark.parametrize("quantize", [quantize_int8_absmax, quantize_fp8_rowwise])
@pytest.mark.parametrize("shape", [(0,), (0, 4), (4, 0)])
def test_empty_tensors_raise_a_value_error_naming_the_shape(quantize, shape):
    with pytest.raises(ValueError, match=rf"input is empty \(shape {re.escape(str(shape))}\)"):
        quantize(torch.empty(shape))
