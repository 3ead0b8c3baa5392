"""The data-mix laws (report §3.1.2): fitting, extrapolating, choosing the mix, down-weighting categories."""

import math

import numpy as np
import pytest
import torch

from minillm.data.mix_laws import (ShareLaw, best_mix, cap_over_represented, extrapolate_offsets, fit_mix_laws,
                                   fit_share_law, objective, predict, refit_offsets)
from minillm.train.mix_sweep import MixSpec, fit_mixes, mixed_stream, permutations_of
from minillm.train.packing import PackedData, batch_at, IGNORE


def test_fit_share_law_recovers_the_law_that_made_the_losses():
    shares = np.array([0.05, 0.1, 0.2, 0.3, 0.6, 0.75])
    law = fit_share_law(shares, 2.0 + 0.5 * shares ** -0.3)
    assert law.c == pytest.approx(0.3, abs=1e-9)
    assert (law.a, law.b) == pytest.approx((2.0, 0.5), abs=1e-6)
    assert law.rmse < 1e-6


def test_fit_mix_laws_fits_each_domain_on_its_own_share():
    runs = [{"mix": {"x": s, "y": 1 - s}, "losses": {"x": 1 + 0.5 * s ** -0.3, "y": 2 + 0.1 * (1 - s) ** -0.6}}
            for s in (0.1, 0.2, 0.4, 0.6, 0.8)]
    laws = fit_mix_laws(runs, ["x", "y"])
    assert (laws["x"].c, laws["y"].c) == pytest.approx((0.3, 0.6), abs=1e-9)
    assert laws["y"].a == pytest.approx(2.0, abs=1e-6)


def test_fit_share_law_never_lets_more_data_hurt():
    law = fit_share_law([0.1, 0.3, 0.6], [1.0, 2.0, 3.0])      # loss rising with share: b clipped to 0
    assert law.b == 0 and law.a == pytest.approx(2.0)


def test_fit_share_law_needs_three_distinct_shares():
    with pytest.raises(ValueError, match="distinct shares"):
        fit_share_law([0.1, 0.1, 0.5], [1, 1, 2])


def test_refit_offsets_moves_only_a():
    laws = {"x": ShareLaw(2.0, 0.5, 0.3), "y": ShareLaw(1.0, 0.2, 0.5)}
    runs = [{"mix": {"x": s, "y": 1 - s}, "losses": {"x": 1.7 + 0.5 * s ** -0.3, "y": 0.9 + 0.2 * (1 - s) ** -0.5}}
            for s in (0.2, 0.5)]
    new = refit_offsets(laws, runs)
    assert new["x"].a == pytest.approx(1.7) and new["y"].a == pytest.approx(0.9)
    assert (new["x"].b, new["x"].c) == (0.5, 0.3)


def test_extrapolate_offsets_is_linear_in_log_parameters():
    small, large = {"x": ShareLaw(3.0, 1, 0.5)}, {"x": ShareLaw(2.5, 1, 0.5)}
    out = extrapolate_offsets(small, large, 1e4, 1e5, 1e6)       # one more decade: another -0.5
    assert out["x"].a == pytest.approx(2.0)
    assert extrapolate_offsets(small, large, 1e4, 1e5, math.sqrt(1e9))["x"].a == pytest.approx(2.75)


def test_best_mix_matches_the_closed_form_for_two_domains():
    # minimise (b1/s + b2/(1-s))/2: s* = sqrt(b1) / (sqrt(b1) + sqrt(b2)) = 2/3 for b1 = 4, b2 = 1
    laws = {"x": ShareLaw(0, 4.0, 1.0), "y": ShareLaw(0, 1.0, 1.0)}
    mix = best_mix(laws, {"x": (0.01, 0.99), "y": (0.01, 0.99)}, step=0.001)
    assert mix["x"] == pytest.approx(2 / 3, abs=1e-3)
    assert objective(predict(laws, mix)) <= objective(predict(laws, {"x": 0.5, "y": 0.5}))


def test_best_mix_respects_bounds_and_symmetry():
    laws = {d: ShareLaw(1.0, 0.3, 0.4) for d in ("a", "b", "c")}
    assert best_mix(laws, dict.fromkeys(laws, (0.1, 0.6)), step=0.01) == pytest.approx(dict.fromkeys(laws, 0.33),
                                                                                         abs=0.011)
    mix = best_mix({"x": ShareLaw(0, 4.0, 1.0), "y": ShareLaw(0, 1.0, 1.0)}, {"x": (0.1, 0.5), "y": (0.5, 0.9)})
    assert mix["x"] == pytest.approx(0.5)


def test_cap_over_represented_cuts_only_categories_above_k_times_the_median():
    shares = {"arts": 0.5, "news": 0.1, "people": 0.1, "places": 0.2, "science": 0.1}
    weights, after = cap_over_represented(shares, k=2.0)       # median 0.1, cap 0.2
    assert weights == pytest.approx({"arts": 0.4, "news": 1, "people": 1, "places": 1, "science": 1})
    assert after["arts"] == pytest.approx(0.2 / 0.7)
    assert after["news"] / after["places"] == pytest.approx(0.5)   # the others keep their ratios
    assert sum(after.values()) == pytest.approx(1)
    with pytest.raises(ValueError, match="k must be"):
        cap_over_represented(shares, k=0.5)


def test_fit_mixes_give_every_domain_enough_distinct_shares():
    for mode, n in (("fast", 4), ("book", 7)):
        mixes = fit_mixes(mode)
        for d in ("general", "math", "code"):
            assert len({round(m[d], 6) for m in mixes}) == n
        assert all(sum(m.values()) == pytest.approx(1) for m in mixes)
    assert len(permutations_of((0.5, 0.25, 0.25))) == 3


def test_mixed_stream_has_the_mix_and_no_target_crosses_rows():
    streams = {d: PackedData(torch.full((1000,), k), torch.arange(1000) // 50)
               for k, d in enumerate(("general", "math", "code"))}
    data = mixed_stream(streams, {"general": 0.5, "math": 0.3, "code": 0.2}, windows=100, seq_len=8)
    counts = torch.bincount(data.tokens, minlength=3)
    assert counts.tolist() == [400, 240, 160]
    batch = batch_at(data, 0, 20, 8)
    assert (batch.targets[:, -1] == IGNORE).all()               # the next row is another window
    assert (batch.tokens == batch.tokens[:, :1]).all()          # each row holds one domain only


def test_mix_spec_validates_its_fields():
    with pytest.raises(ValueError, match="widths"):
        MixSpec(widths=(32, 16, 64))
    with pytest.raises(ValueError, match="tokens"):
        MixSpec(tokens=100)
