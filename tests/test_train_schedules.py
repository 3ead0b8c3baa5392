"""LR schedule (warm-up, cosine, floor, annealing) and batch-size ramp of report §3.4.1 / §3.4.3."""

import math

import pytest

from minillm.train import BatchRamp, LRSchedule, RampStage


def test_llama3_schedule_peaks_after_8000_warmup_steps_and_reaches_the_floor_at_1_2m():
    s = LRSchedule.llama3()
    assert (s.peak_lr, s.warmup_steps, s.total_steps, s.final_lr) == (8e-5, 8000, 1_200_000, 8e-7)
    assert s.lr(0) == pytest.approx(8e-5 / 8000)
    assert s.lr(3999) == pytest.approx(4e-5)
    assert s.lr(7999) == s.lr(8000) == 8e-5                                 # last warm-up step and cosine start
    assert s.lr(1_200_000) == 8e-7 and s.lr(5_000_000) == 8e-7
    assert s.lr(1_199_999) > 8e-7
    mid = (8000 + 1_200_000) // 2
    assert s.lr(mid) == pytest.approx((8e-5 + 8e-7) / 2)                    # the cosine's midpoint
    steps = range(0, 1_300_000, 997)
    assert max(s.lr(t) for t in steps) <= 8e-5
    warm = [s.lr(t) for t in range(0, 8000, 50)]
    decay = [s.lr(t) for t in range(8000, 1_300_000, 5000)]
    assert warm == sorted(warm) and decay == sorted(decay, reverse=True)


def test_scaled_schedule_keeps_the_shape():
    s = LRSchedule.llama3().scaled(3000, peak_lr=1e-3)
    assert s.warmup_steps == 20 and s.total_steps == 3000                   # 8000 / 1.2M of the run
    assert s.final_lr == pytest.approx(1e-5)                                # floor = 1% of the peak
    assert s.lr(19) == s.lr(20) == 1e-3 and s.lr(3000) == pytest.approx(1e-5)
    assert LRSchedule.llama3().scaled(10).warmup_steps == 1                 # at least one warm-up step


def test_annealing_takes_the_lr_linearly_to_zero():
    s = LRSchedule(peak_lr=1.0, warmup_steps=10, total_steps=100, final_lr=0.1).with_annealing(start=60, steps=40)
    base = s.base_lr(60)
    assert s.lr(59) == s.base_lr(59) and s.lr(60) == base
    assert s.lr(80) == pytest.approx(base / 2)
    assert s.lr(100) == 0 and s.lr(150) == 0


def test_llama3_batch_ramp_doubles_batch_and_sequence_at_the_reported_token_counts():
    ramp = BatchRamp.llama3()
    m = 2**20
    assert ramp.at(0) == RampStage(0, 4 * m, 4096) and ramp.at(0).batch_size == 1024
    assert ramp.at(251_999_999).seq_len == 4096
    assert (ramp.at(252_000_000).batch_tokens, ramp.at(252_000_000).seq_len) == (8 * m, 8192)
    assert ramp.at(2_869_999_999_999).batch_tokens == 8 * m
    late = ramp.at(2_870_000_000_000)
    assert (late.batch_tokens, late.seq_len, late.batch_size) == (16 * m, 8192, 2048)


def test_scaled_ramp_keeps_the_doublings():
    ramp = BatchRamp.llama3().scaled(token_factor=2**-14, seq_factor=1 / 64)
    a, b, c = ramp.stages
    assert (a.seq_len, b.seq_len, c.seq_len) == (64, 128, 128)
    assert (b.batch_tokens / a.batch_tokens, c.batch_tokens / b.batch_tokens) == (2, 2)
    assert b.start_tokens == round(252_000_000 * 2**-14)


def test_schedule_config_errors_name_the_field():
    with pytest.raises(ValueError, match="total_steps"):
        LRSchedule(warmup_steps=10, total_steps=5)
    with pytest.raises(ValueError, match="final_lr"):
        LRSchedule(peak_lr=1e-4, final_lr=1e-3)
    with pytest.raises(ValueError, match="multiple of seq_len"):
        BatchRamp(((0, 100, 64),))
    with pytest.raises(ValueError, match="start_tokens=0"):
        BatchRamp(((5, 128, 64),))
    assert not math.isnan(LRSchedule().lr(10))
