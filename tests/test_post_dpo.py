"""DPO as the report runs it: formatting tokens masked, an NLL term per token, a frozen reference; and RLOO's step."""

import copy

import pytest
import torch

from minillm import Llama, ModelConfig
from minillm.post import (DPOConfig, PreferenceTriple, RLOOConfig, dpo_loss, dpo_objective, frozen_copy,
                          preference_batch, sequence_logps, train_dpo, train_rloo)
from minillm.infer.engine import CompletionOutput
from minillm.post import rloo
from minillm.tokenizer import train_bpe

PROMPT = [{"role": "system", "content": "Answer with the number."}, {"role": "user", "content": "What is 3 + 4?"}]
TRIPLE = PreferenceTriple(PROMPT, chosen="The answer is 7.", rejected="The answer is 8.")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok():
    return train_bpe(["Answer with the number. What is 3 + 4? The answer is 7. system user assistant"] * 30,
                     vocab_size=300)


@pytest.fixture
def policy(tok):
    torch.manual_seed(0)
    return Llama(ModelConfig.tiny(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=tok.vocab_size,
                                  max_seq_len=128, tie_embeddings=True))


def test_dpo_masks_headers_and_end_of_turn_tokens_out_of_the_log_probs(tok):
    batch = preference_batch(tok, [(PROMPT, TRIPLE.chosen, TRIPLE.rejected)])
    tokens, mask = batch["tokens"], batch["loss_mask"]
    assert tokens.shape[0] == 2                                                   # chosen row, rejected row
    for row, text in zip(range(2), [TRIPLE.chosen, TRIPLE.rejected]):
        picked = tokens[row][mask[row]].tolist()
        assert tok.decode(picked) == text                                         # exactly the response's content
        assert not set(picked) & set(tok.special_ids)
        full = tok.encode_chat([*PROMPT, {"role": "assistant", "content": text}], add_generation_prompt=False)
        assert tokens[row, :len(full)].tolist() == full and full[-1] == tok.eot_id   # eot is there, not scored
    with_special = preference_batch(tok, [(PROMPT, TRIPLE.chosen, TRIPLE.rejected)], train_on_special=True)
    assert (with_special["loss_mask"].sum(1) == mask.sum(1) + 1).all()           # + <|eot_id|>


def test_sequence_logps_sum_the_log_softmax_of_the_masked_tokens(policy, tok):
    batch = preference_batch(tok, [(PROMPT, TRIPLE.chosen, TRIPLE.rejected)])
    with torch.no_grad():
        logps, counts = sequence_logps(policy, batch["tokens"], batch["loss_mask"])
        for row in range(2):
            ids = batch["tokens"][row]
            expected = 0.0
            for t in range(1, ids.numel()):                                      # token t scored from position t-1
                if batch["loss_mask"][row, t]:
                    expected += torch.log_softmax(policy(ids[None, :t])[0, -1], -1)[ids[t]].item()
            assert logps[row].item() == pytest.approx(expected, rel=1e-4)
            assert counts[row] == batch["loss_mask"][row].sum()


def test_objective_adds_point_two_times_the_per_token_nll_of_the_chosen(policy, tok):
    reference = copy.deepcopy(policy)
    torch.nn.init.normal_(reference.layers[0].feed_forward.w2.weight, std=0.2)   # differ from the policy
    batch = preference_batch(tok, [(PROMPT, TRIPLE.chosen, TRIPLE.rejected)] * 2)
    cfg = DPOConfig(beta=0.1, nll_coef=0.2)
    loss, metrics = dpo_objective(policy, reference, batch, cfg)
    with torch.no_grad():
        pol, n = sequence_logps(policy, batch["tokens"], batch["loss_mask"])
        ref, _ = sequence_logps(reference, batch["tokens"], batch["loss_mask"])
    losses, _, _ = dpo_loss(pol[:2], pol[2:], ref[:2], ref[2:], 0.1)
    assert losses.mean().item() != pytest.approx(0.6931, abs=1e-3)               # the reference really differs
    expected = losses.mean() + 0.2 * (-(pol[:2] / n[:2])).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["nll"] == pytest.approx((-(pol[:2] / n[:2])).mean().item(), rel=1e-5)


def test_no_gradient_reaches_the_reference_model(policy, tok):
    reference = copy.deepcopy(policy)                                            # trainable on purpose
    assert all(p.requires_grad for p in reference.parameters())
    before_ref = copy.deepcopy(reference.state_dict())
    before_pol = copy.deepcopy(policy.state_dict())
    train_dpo(policy, tok, [TRIPLE], DPOConfig(steps=2, pairs_per_step=2, warmup_steps=0), reference=reference)
    assert all(p.grad is None for p in reference.parameters())
    assert all(torch.equal(before_ref[k], v) for k, v in reference.state_dict().items())
    assert any(not torch.equal(before_pol[k], v) for k, v in policy.state_dict().items())
    frozen = frozen_copy(policy)
    assert not any(p.requires_grad for p in frozen.parameters()) and not frozen.training


def test_dpo_steps_raise_the_implicit_reward_margin_of_the_chosen_response(policy, tok):
    cfg = DPOConfig(steps=6, pairs_per_step=2, lr=1e-2, warmup_steps=0, final_lr=1e-2, nll_coef=0.0)
    history = train_dpo(policy, tok, [TRIPLE], cfg)
    assert history[0]["reward_margin"] == 0.0                                    # policy == reference at step 1
    assert history[-1]["reward_margin"] > 0.0 and history[-1]["dpo_loss"] < history[0]["dpo_loss"]


def test_an_rloo_step_is_reinforce_with_the_leave_one_out_baseline(policy, tok, monkeypatch):
    """Two fixed samples of one prompt (sampling itself is the engine's, tested there): rewards 1 and 0 give
    advantages +1 and −1; the loss is −mean(A · log π(y)) and one small step moves probability to the better one."""
    good, bad = tok.encode("The answer is 7."), tok.encode("The answer is 8.")
    samples = [[CompletionOutput(0, None, good, "stop"), CompletionOutput(1, None, bad, "stop")]]
    monkeypatch.setattr(rloo, "sample_completions", lambda *a, **k: samples)
    rows = preference_batch(tok, [(PROMPT, "The answer is 7.", "The answer is 8.")], train_on_special=True)

    def log_probs():
        with torch.no_grad():
            return sequence_logps(policy, rows["tokens"], rows["loss_mask"])[0]   # (2,): content + <|eot_id|>

    before = log_probs()
    reference = frozen_copy(policy)
    optimizer = torch.optim.SGD(policy.parameters(), lr=1e-2)
    cfg = RLOOConfig(k=2, kl_coef=0.0)
    out = rloo.rloo_step(policy, reference, optimizer, tok, [PROMPT], lambda i, text: 0.5, cfg)
    assert out["loss"] == 0.0 and torch.equal(log_probs(), before)               # equal rewards: no update
    samples[0][0].text, samples[0][1].text = "good", "bad"
    out = rloo.rloo_step(policy, reference, optimizer, tok, [PROMPT], lambda i, text: float(text == "good"), cfg)
    assert out["loss"] == pytest.approx(-(1.0 * before[0] + (-1.0) * before[1]).item() / 2, rel=1e-4)
    after = log_probs()
    assert after[0] - after[1] > before[0] - before[1]
    assert out["kl"] == pytest.approx(0.0, abs=1e-6)                             # sampled from π = π_ref


def test_rloo_training_runs_on_engine_samples_and_moves_away_from_the_reference(policy, tok):
    cfg = RLOOConfig(steps=3, prompts_per_step=2, k=4, lr=3e-2, final_lr=3e-2, kl_coef=0.01, max_tokens=6)
    history = train_rloo(policy, tok, [PROMPT, PROMPT[1:]], lambda i, text: float(len(text)), cfg)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-5)                      # sampled before the first update
    assert history[-1]["kl"] != pytest.approx(0.0, abs=1e-5)
