"""Post-training losses against the papers' formulas, written out by hand with ``math`` on a few numbers."""

import math

import pytest
import torch

from minillm.post import (DPOConfig, PostTrainSpec, RejectionConfig, RewardConfig, RLOOConfig, SFTConfig, dpo_loss,
                          kl_penalised_rewards, paired_comparison, reward_loss, rloo_advantages, wilson_interval)
from minillm.post.reward_model import ranked_pair_loss


def log_sigmoid(x: float) -> float:
    return -math.log(1 + math.exp(-x))


def test_dpo_loss_is_equation_7_of_rafailov_et_al_with_its_implicit_rewards():
    pc, pr, rc, rr = [-4.0, -10.0], [-6.0, -7.5], [-5.0, -9.0], [-5.5, -8.0]
    beta = 0.1
    losses, chosen_rewards, rejected_rewards = dpo_loss(torch.tensor(pc), torch.tensor(pr), torch.tensor(rc),
                                                        torch.tensor(rr), beta=beta)
    for i in range(2):
        # −log σ(β log π(y_w)/π_ref(y_w) − β log π(y_l)/π_ref(y_l))
        expected = -log_sigmoid(beta * (pc[i] - rc[i]) - beta * (pr[i] - rr[i]))
        assert losses[i].item() == pytest.approx(expected, rel=1e-6)
        assert chosen_rewards[i].item() == pytest.approx(beta * (pc[i] - rc[i]), rel=1e-6)
        assert rejected_rewards[i].item() == pytest.approx(beta * (pr[i] - rr[i]), rel=1e-6)
    # pair 0: the policy raised the chosen (+1) and lowered the rejected (−0.5) → loss below log 2; pair 1 the opposite
    assert losses[0] < math.log(2) < losses[1]


def test_dpo_implicit_rewards_carry_no_gradient_and_the_loss_does():
    pc = torch.tensor([-4.0], requires_grad=True)
    losses, chosen_rewards, _ = dpo_loss(pc, torch.tensor([-6.0]), torch.tensor([-5.0]), torch.tensor([-5.5]), 0.5)
    assert not chosen_rewards.requires_grad
    losses.sum().backward()
    # d/dx −log σ(β x + c) = −β (1 − σ(β x + c))
    z = 0.5 * (-4.0 + 5.0) - 0.5 * (-6.0 + 5.5)
    assert pc.grad.item() == pytest.approx(-0.5 * (1 - 1 / (1 + math.exp(-z))), rel=1e-6)


@pytest.mark.parametrize("shapes", [[(3,), (3, 1), (3,), (3,)], [(3,), (3,), (3,), (2,)], [(3, 1)] * 4, [()] * 4])
def test_dpo_loss_rejects_inputs_that_are_not_one_value_per_pair_naming_the_shapes(shapes):
    tensors = [torch.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=r"shape \(N,\).*policy_chosen_logps \(.*ref_rejected_logps \("):
        dpo_loss(*tensors)


def test_dpo_loss_of_n_pairs_is_n_losses():
    losses, chosen, rejected = dpo_loss(*[torch.randn(5) for _ in range(4)])
    assert losses.shape == chosen.shape == rejected.shape == (5,)


def test_reward_loss_rejects_a_column_of_rewards_and_integer_rewards():
    with pytest.raises(ValueError, match=r"chosen \(4,\), rejected \(4, 1\)"):
        reward_loss(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"margin \(4, 1\)"):
        reward_loss(torch.zeros(4), torch.zeros(4), margin=torch.zeros(4, 1))
    with pytest.raises(ValueError, match="chosen must be floating point"):
        reward_loss(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_bradley_terry_loss_without_and_with_the_llama2_margin():
    chosen, rejected = torch.tensor([1.5, -0.2, 0.0]), torch.tensor([0.5, 0.3, 0.0])
    plain = reward_loss(chosen, rejected, reduction="none")
    assert plain.tolist() == pytest.approx([-log_sigmoid(1.0), -log_sigmoid(-0.5), math.log(2)], rel=1e-6)
    assert reward_loss(chosen, rejected).item() == pytest.approx(plain.mean().item(), rel=1e-6)
    margins = torch.tensor([1.0, 0.5, 0.25])               # Llama 2: larger margin for a clearer preference
    with_margin = reward_loss(chosen, rejected, margin=margins, reduction="none")
    assert with_margin.tolist() == pytest.approx([math.log(2), -log_sigmoid(-1.0), -log_sigmoid(-0.25)], rel=1e-6)
    assert (with_margin > plain).all()                     # a margin asks for a larger gap: never a smaller loss


def test_ranked_pair_loss_averages_bradley_terry_over_every_better_worse_pair_of_a_row():
    # row 0: three responses placed in the order ranks (2, 0, 1); row 1: two responses and an empty slot
    rewards = torch.tensor([[0.1, 2.0, 1.0], [0.7, -0.3, 9.9]])
    ranks = torch.tensor([[2, 0, 1], [1, 0, -1]])
    loss, acc = ranked_pair_loss(rewards, ranks)
    pairs = [(2.0, 1.0), (2.0, 0.1), (1.0, 0.1), (-0.3, 0.7)]   # (better, worse) by hand
    expected = sum(-log_sigmoid(b - w) for b, w in pairs) / len(pairs)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert acc.item() == pytest.approx(3 / 4)


def test_rloo_advantage_subtracts_the_mean_of_the_other_samples():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 2.0, -1.0, 3.5]])
    adv = rloo_advantages(rewards)
    for p in range(2):
        for i in range(4):
            others = [rewards[p, j].item() for j in range(4) if j != i]
            assert adv[p, i].item() == pytest.approx(rewards[p, i].item() - sum(others) / 3, rel=1e-6)
    # k/(k−1)·(r − mean): the same thing, and the advantages of a prompt sum to zero
    assert torch.allclose(adv, 4 / 3 * (rewards - rewards.mean(1, keepdim=True)))
    assert torch.allclose(adv.sum(1), torch.zeros(2), atol=1e-6)
    assert (rloo_advantages(torch.ones(3, 5)) == 0).all()   # all equal: nothing to learn


def test_rloo_needs_two_samples_per_prompt():
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.ones(4, 1))


def test_kl_penalty_lowers_the_reward_by_beta_times_the_sampled_log_ratio():
    r = torch.tensor([[1.0, 0.0]])
    pol = torch.tensor([[-2.0, -5.0]], requires_grad=True)
    ref = torch.tensor([[-3.0, -4.0]])
    total = kl_penalised_rewards(r, pol, ref, kl_coef=0.1)
    assert total.tolist()[0] == pytest.approx([1.0 - 0.1 * 1.0, 0.0 - 0.1 * -1.0])
    assert not total.requires_grad                         # the penalty is part of the reward, not a gradient path


@pytest.mark.parametrize("successes,n,low,high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3 (Wilson)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_matches_newcombes_table(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-4)


@pytest.mark.parametrize("successes,n", [(3, 10), (50, 128), (127, 128)])
def test_wilson_bounds_are_the_proportions_whose_score_test_is_exactly_z(successes, n):
    z = 1.959963984540054
    p_hat = successes / n
    for p in wilson_interval(successes, n):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9)   # |p̂ − p| / se(p) = z


def test_paired_comparison_is_mcnemars_exact_test_and_a_paired_bootstrap():
    from scipy.stats import binomtest

    before = [True] * 30 + [False] * 50 + [True] * 4 + [False] * 16       # 34 right
    after = [True] * 30 + [False] * 50 + [False] * 4 + [True] * 16        # 46 right: 16 gained, 4 lost
    out = paired_comparison(before, after, n_boot=4000)
    assert (out["gained"], out["lost"], out["n"]) == (16, 4, 100) and out["diff"] == pytest.approx(0.12)
    assert out["p"] == pytest.approx(binomtest(16, 20, 0.5).pvalue, rel=1e-12)
    se = (20 / 100 - 0.12 ** 2) ** 0.5 / 100 ** 0.5                       # sd of the per-problem difference / √n
    assert out["low"] == pytest.approx(0.12 - 1.96 * se, abs=0.02) and out["high"] == pytest.approx(0.12 + 1.96 * se,
                                                                                                  abs=0.02)
    same = paired_comparison(before, before)
    assert same["p"] == 1.0 and same["low"] == same["high"] == same["diff"] == 0.0


@pytest.mark.parametrize("make,field", [
    (lambda: DPOConfig(beta=0), "DPOConfig.beta"),
    (lambda: DPOConfig(nll_coef=-1), "DPOConfig.nll_coef"),
    (lambda: RewardConfig(steps=0), "RewardConfig.steps"),
    (lambda: RewardConfig(margin=-1.0), "RewardConfig.margin"),
    (lambda: RejectionConfig(k=1), "RejectionConfig.k"),
    (lambda: RejectionConfig(selector="best"), "RejectionConfig.selector"),
    (lambda: RLOOConfig(k=1), "RLOOConfig.k"),
    (lambda: SFTConfig(steps=10, warmup_steps=20),
     ("SFTConfig's schedule", "warmup_steps=20", "must be >= warmup_steps")),
    (lambda: SFTConfig(seq_len=0), "SFTConfig.seq_len"),
    (lambda: DPOConfig(lr=1e-5, final_lr=1e-4),
     ("DPOConfig's schedule", "final_lr=0.0001", "must lie in")),
    (lambda: RewardConfig(triples_per_step=2.5), "RewardConfig.triples_per_step"),
    (lambda: RLOOConfig(steps=5, warmup_steps=6),
     ("RLOOConfig's schedule", "warmup_steps=6", "must be >= warmup_steps")),
    (lambda: RLOOConfig(max_tokens=0), "RLOOConfig.max_tokens"),
    (lambda: PostTrainSpec(rounds=0), "PostTrainSpec.rounds"),
])
def test_configs_reject_bad_fields_naming_them(make, field):
    with pytest.raises(ValueError) as error:
        make()
    for part in (field,) if isinstance(field, str) else field:          # the config, the field and what is wrong
        assert part in str(error.value)


def test_paired_difference_is_scipys_paired_t_test_and_interval():
    import numpy as np
    from scipy import stats

    from minillm.eval.stats import paired_difference

    rng = np.random.default_rng(0)
    before = rng.normal(size=200)
    after = before + 0.1 + rng.normal(scale=0.5, size=200)
    out = paired_difference(after, before)
    ref = stats.ttest_rel(after, before)
    low, high = ref.confidence_interval(0.95)
    assert out["p"] == pytest.approx(ref.pvalue) and out["n"] == 200
    assert (out["diff"] - out["half"], out["diff"] + out["half"]) == pytest.approx((low, high))
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([1.0], [0.0])
