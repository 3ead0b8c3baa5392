"""Format instructions, planted annotator noise, rule-based cleaning, and the instruction target of the loop."""

import random
from types import SimpleNamespace

import pytest

from minillm.post import DataConfig, PostTrainSpec, build_post_data, eval_prompt, evaluate_accuracy, post_training_spec
from minillm.eval.stats import binomial_p
from minillm.post import loop
from minillm.post.data import canonical_response, follows_instruction, is_correct
from minillm.post.instructions import (KINDS, TICS, FormatInstruction, cleaning_rules, follows, ignoring,
                                       rule_based_clean, tail_repetition, with_tic)

NOISE = dict(instructions=True, ignore_prob={"uppercase": 0.6, "json": 0.6, "bullet": 0.1}, sloppy_prob=0.3)


@pytest.fixture(scope="module")
def data():
    return build_post_data(DataConfig(n_train=400, n_dev=40, n_test=20, dialogue_fraction=0.2, **NOISE))


def test_each_reference_follows_its_own_instruction_and_no_other():
    for kind in KINDS:
        reference = FormatInstruction(kind).render("-7")
        passes = {other for other in KINDS if FormatInstruction(other).check(reference)}
        # a JSON answer is all lowercase letters; every other form is told apart by every other check
        assert passes == ({"json", "lowercase"} if kind == "json" else {kind}), (kind, passes)
    assert follows(FormatInstruction("uppercase"), "THE ANSWER IS 3.")
    assert not follows(FormatInstruction("uppercase"), "THE ANSWER IS THREE.")           # no number stated
    assert not FormatInstruction("json").check('{"answer": 3, "why": 1}') and not FormatInstruction("json").check("{")
    assert not FormatInstruction("bullet").check("* a\n* b") and not FormatInstruction("ends_with").check("That is all.")
    with pytest.raises(ValueError, match="kind must be one of"):
        FormatInstruction("italics")


def test_ignoring_never_follows_and_the_cleaning_rules_see_every_tic_and_no_reference():
    rng = random.Random(0)
    for _ in range(300):
        instruction = FormatInstruction(rng.choice(KINDS))
        assert not instruction.check(ignoring(instruction, str(rng.randint(-20, 20)), rng))
    for kind in KINDS:
        reference = FormatInstruction(kind).render("12")
        assert cleaning_rules(reference) == []
        for template in TICS:
            assert cleaning_rules(template.format(r=reference)), template
    assert cleaning_rules("I APOLOGIZE.") == ["apology"] and cleaning_rules("Wow! Nice!") == []


def test_the_planted_noise_is_what_the_config_asks_and_cleaning_removes_exactly_the_tics(data):
    by_kind = {k: [f for item, f in zip(data.train, data.planted) if item.instruction.kind == k] for k in KINDS}
    for kind, flaws in by_kind.items():
        share = flaws.count("ignores") / len(flaws)
        assert abs(share - NOISE["ignore_prob"].get(kind, 0.0)) < 0.17, (kind, share)   # ~80 items a kind
        assert abs(flaws.count("sloppy") / len(flaws) - 0.3) < 0.17
    for chat, flaw, item in zip(data.sft_chats, data.planted, data.train):
        last = chat[-1]["content"]
        assert is_correct(item, last)                                    # noise is in the form, never the number
        if flaw != "sloppy":                          # a tic may or may not break the form ("Sorry! * ...")
            assert follows_instruction(item, last) == (flaw == ""), (flaw, last)
        assert bool(cleaning_rules(last)) == (flaw == "sloppy")
    kept, broken = rule_based_clean(data.sft_chats)
    assert [bool(b) for b in broken] == [f == "sloppy" for f in data.planted]
    assert len(kept) == data.planted.count("ignores") + data.planted.count("")


def test_preferences_rank_by_flaws_with_the_right_number_everywhere(data):
    def n_flaws(t, text):
        return (not follows_instruction(t.item, text)) + bool(cleaning_rules(text))

    for t in data.preferences + data.heldout_preferences:
        ranked = t.ranked()
        flaws = [n_flaws(t, r) for r in ranked]
        assert flaws[-1] == 2 and flaws[-2] >= 1 and (t.edited is None or flaws[0] == 0), (flaws, ranked)
        chosen_tic, chosen_follows = bool(cleaning_rules(t.chosen)), follows_instruction(t.item, t.chosen)
        assert chosen_tic or not chosen_follows                          # one planted flaw at least
        assert all(is_correct(t.item, r) for r in ranked)
        assert t.prompt[-1]["content"].endswith(t.item.instruction.describe())


def test_eval_prompt_carries_the_instruction_and_the_instruction_target_is_scored(data, monkeypatch):
    items = data.test[:6]
    texts = [canonical_response(items[0]), with_tic(canonical_response(items[1]), random.Random(0)),
             "The answer is 1/1000003.", canonical_response(items[3]), "", canonical_response(items[5])]
    monkeypatch.setattr(loop, "sample_completions", lambda *a, **k: [[SimpleNamespace(text=t)] for t in texts])
    result = evaluate_accuracy(None, None, items, target="instruction")
    assert eval_prompt(items[0])[-1]["content"].endswith(items[0].instruction.describe())
    assert result["correct"] == [follows_instruction(i, t) for i, t in zip(items, texts)]
    assert result["correct"][0] and result["correct"][3] and not result["correct"][4]
    assert result["clean"] == [True, False, True, True, True, True]
    assert result["right_answer"][0] and not result["right_answer"][2]
    with pytest.raises(ValueError, match="target must be one of"):
        evaluate_accuracy(None, None, items, target="style")


def test_configs_name_the_bad_field():
    with pytest.raises(ValueError, match="ignore_prob"):
        DataConfig(instructions=True, ignore_prob={"italics": 0.5})
    with pytest.raises(ValueError, match="sloppy_prob must be <= 1"):
        DataConfig(instructions=True, ignore_prob={"json": 0.8}, sloppy_prob=0.3)
    with pytest.raises(ValueError, match="instructions=True"):
        DataConfig(sloppy_prob=0.2)
    with pytest.raises(ValueError, match="target='instruction' needs"):
        PostTrainSpec(target="instruction")
    with pytest.raises(ValueError, match="target must be one of"):
        PostTrainSpec(target="style")
    for mode in ("fast", "book", "full"):
        assert post_training_spec(mode).target == "instruction"


def test_tail_repetition():
    assert tail_repetition("The answer is 6. That is all. That is all.")
    assert not tail_repetition("The answer is 6. That is all.") and not tail_repetition("a b")


def test_the_exact_binomial_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(0, 0), (0, 1), (3, 10), (5, 10), (49, 0 + 49), (230, 248), (12, 30)]:
        expected = 1.0 if n == 0 else stats.binomtest(k, n).pvalue
        assert binomial_p(k, n) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        binomial_p(3, 2)
