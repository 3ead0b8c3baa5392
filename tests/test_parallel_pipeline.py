"""Pipeline parallelism: GPipe over 2 and 4 stages with 1, 4 and 8 micro-batches gives one process's loss and
gradients (fp32, 1e-5); one optimizer step leaves one process's weights; PyTorch's ``ScheduleGPipe`` on the same split
gives the same gradients as ours; micro-batched pipelined generation gives ``minillm.generate``'s greedy tokens, and
on simulated devices (``StageCost``) it keeps them and is never faster than ``simulate_generation``'s schedule, which
follows the pipeline's closed forms.
The runs are launched by ``test_parallel_launch.suite``."""

import pytest
import torch

from minillm import generate
from minillm.parallel import (PipelineConfig, PipelineInferenceConfig, StageCost, bubble_fraction, gpipe_bubble,
                              gpipe_schedule, lm_loss, simulate_generation, split_layers)
from test_parallel_launch import CFG, COST, LR, MICRO, NEW, PROMPT, TOL, reference_batch, reference_model, suite


def _reference():
    model = reference_model()
    tokens, targets = reference_batch()
    loss = lm_loss(model(tokens), targets)
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters()}


def _merged(tensors, world, key):
    """The gradients of all stages, each parameter from the one stage that holds it."""
    out = {}
    for r in range(world):
        part = tensors[r][key]["grads"]
        assert not out.keys() & part.keys(), "a parameter lives on two stages"
        out.update(part)
    return out


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("micro", MICRO)
def test_gpipe_gives_the_single_process_loss_and_gradients(world, micro):
    _, tensors = suite(world)
    ref_loss, ref = _reference()
    got = _merged(tensors, world, f"gpipe_{micro}")
    assert got.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], **TOL, msg=name)
    assert tensors[world - 1][f"gpipe_{micro}"]["loss"] == pytest.approx(ref_loss, rel=1e-6)


@pytest.mark.parametrize("world", [2, 4])
def test_gpipe_runs_all_forwards_before_all_backwards(world):
    _, tensors = suite(world)
    for r in range(world):
        assert tensors[r]["gpipe_8"]["events"] == [("F", m) for m in range(8)] + [("B", m) for m in range(8)]


@pytest.mark.parametrize("world", [2, 4])
def test_one_gpipe_optimizer_step_equals_the_single_process_step(world):
    _, tensors = suite(world)
    model = reference_model()
    tokens, targets = reference_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    lm_loss(model(tokens), targets).backward()
    opt.step()
    got = {}
    for r in range(world):
        got.update(tensors[r]["gpipe_step"])
    expected = dict(model.named_parameters())
    assert got.keys() == expected.keys()
    for name, w in got.items():
        torch.testing.assert_close(w, expected[name].detach(), **TOL, msg=name)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("micro", [4, 8])
def test_our_gpipe_matches_torch_schedule_gpipe(world, micro):
    _, tensors = suite(world)
    ours = _merged(tensors, world, f"gpipe_{micro}")
    theirs = _merged(tensors, world, f"torch_gpipe_{micro}")
    assert ours.keys() == theirs.keys() == dict(reference_model().named_parameters()).keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], **TOL, msg=name)
    assert tensors[world - 1][f"torch_gpipe_{micro}"]["loss"] == pytest.approx(
        tensors[world - 1][f"gpipe_{micro}"]["loss"], rel=1e-6)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("micro", [1, 2, 4])
def test_pipelined_generation_gives_generates_greedy_tokens(world, micro):
    _, tensors = suite(world)
    model = reference_model().eval()
    prompts = reference_batch(4, PROMPT)[0]
    expected = generate(model, prompts.tolist(), NEW, temperature=0.0)
    got = tensors[world - 1][f"infer_{micro}"]["tokens"]
    assert got.tolist() == [list(e) for e in expected]
    for r in range(world - 1):
        assert tensors[r][f"infer_{micro}"]["tokens"] is None
        assert tensors[r][f"infer_{micro}"]["steps"] == [(s, m) for s in range(NEW) for m in range(micro)]


def test_layers_split_into_balanced_consecutive_stages():
    assert split_layers(10, 4) == [range(0, 3), range(3, 6), range(6, 8), range(8, 10)]
    assert [len(r) for r in split_layers(CFG.n_layers, 4)] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match=r"PipelineConfig.n_stages \(5\) exceeds the model's n_layers \(4\)"):
        split_layers(4, 5)


def test_pipeline_configs_say_what_to_fix():
    with pytest.raises(ValueError, match="PipelineConfig.n_microbatches"):
        PipelineConfig(2, 0)
    with pytest.raises(ValueError, match="use a divisor of 6"):
        PipelineConfig(2, 4).check_batch(6)
    with pytest.raises(ValueError, match="PipelineInferenceConfig.max_new_tokens"):
        PipelineInferenceConfig(1, 0)


@pytest.mark.parametrize("K,M", [(4, 1), (4, 4), (4, 8), (2, 3)])
def test_the_paper_schedule_respects_every_dependency_and_its_bubble_is_the_gpipe_formula(K, M):
    f, b = 1.0, 2.0
    events = gpipe_schedule(K, M, f, b)
    at = {(e.kind, e.stage, e.micro): e for e in events}
    assert len(at) == 2 * K * M and all(e.seconds == (f if e.kind == "F" else b) for e in events)
    for k in range(K):
        mine = sorted((e for e in events if e.stage == k), key=lambda e: e.start)
        assert all(x.end <= y.start for x, y in zip(mine, mine[1:]))                 # one thing at a time
        assert [e.kind for e in mine] == ["F"] * M + ["B"] * M                       # all forwards, then backwards
        for m in range(M):
            if k:                                                                    # activations from stage k-1
                assert at["F", k, m].start >= at["F", k - 1, m].end
            if k < K - 1:                                                            # gradients from stage k+1
                assert at["B", k, m].start >= at["B", k + 1, m].end
    assert at["B", K - 1, 0].start == at["F", K - 1, M - 1].end                      # no slack anywhere: as early as
    assert bubble_fraction(events, K) == pytest.approx(gpipe_bubble(K, M))           # the dependencies allow
    assert gpipe_bubble(K, M) == pytest.approx((K - 1) / (M + K - 1))
    with pytest.raises(ValueError, match="n_stages"):
        gpipe_schedule(0, 4)


# ------------------------------------------------------------------------- micro-batched inference on simulated devices
@pytest.mark.parametrize("K,M", [(2, 1), (2, 2), (2, 4), (4, 2), (3, 3)])
def test_simulated_generation_follows_the_pipeline_closed_forms(K, M):
    c, new = 1.0, 6
    timing, events = simulate_generation(K, PipelineInferenceConfig(M, new), (4 * M, 8), StageCost(c))
    assert [t[0] for t in timing.token_at] == [(m + K) * c for m in range(M)]      # the GPipe fill
    assert timing.prefill_end == (M + K - 1) * c
    for m, t in enumerate(timing.token_at):
        assert t[1] == timing.prefill_end + (m + K) * c                           # after the barrier, round the ring
        assert [b - a for a, b in zip(t[1:], t[2:])] == [max(K, M) * c] * (new - 2)
    assert len(events) == K * M * new


def test_simulated_generation_charges_the_affine_cost_and_each_hop():
    cost, hop, B, P = StageCost(0.5, 0.01), 0.1, 8, 10
    timing, _ = simulate_generation(2, PipelineInferenceConfig(2, 3), (B, P), cost, hop_s=hop)
    prefill, decode = cost.seconds(B // 2 * P), cost.seconds(B // 2)
    assert timing.token_at[0][0] == pytest.approx(2 * prefill + hop)
    assert timing.token_at[1][0] == pytest.approx(3 * prefill + hop)
    assert timing.prefill_end == pytest.approx(timing.token_at[1][0])
    assert timing.token_at[0][1] == pytest.approx(timing.prefill_end + 2 * decode + hop)
    assert cost.knee == pytest.approx(50)


def test_stage_cost_says_what_to_fix():
    with pytest.raises(ValueError, match="StageCost.fixed_s"):
        StageCost(-1.0)
    with pytest.raises(ValueError, match="cost=None"):
        StageCost(0.0, 0.0)
    with pytest.raises(ValueError, match="n_microbatches"):
        simulate_generation(2, PipelineInferenceConfig(3, 2), (4, 8), StageCost(1.0))


@pytest.mark.parametrize("world", [2, 4])
def test_a_simulated_device_keeps_the_tokens_and_lasts_at_least_its_cost(world):
    _, tensors = suite(world)
    got = tensors[world - 1]["infer_cost"]
    assert got["tokens"].tolist() == tensors[world - 1]["infer_2"]["tokens"].tolist()
    cost, B = StageCost(*COST), 4
    for r in range(world):
        for step, _, seconds in tensors[r]["infer_cost"]["events"]:
            assert seconds >= cost.seconds(B // 2 * (PROMPT if step == 0 else 1))
    # the model's schedule is the earliest one these durations allow: the real run cannot be faster
    model, _ = simulate_generation(world, PipelineInferenceConfig(2, NEW), (B, PROMPT), cost)
    for real, ideal in zip(got["token_at"], model.token_at):
        assert all(r >= 0.95 * i for r, i in zip(real, ideal))
