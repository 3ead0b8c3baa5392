"""IFEval-style checkers on hand-written responses that must pass or fail, the generated prompts (deterministic,
no contradictory pairs), and the strict/loose accuracies."""

import pytest

from minillm.eval.ifeval import (VERSION, BulletList, EndsWith, ForbiddenWords, IFItem, IncludeKeywords, JsonFormat,
                                 Lowercase, NoCommas, WordCount, _CONFLICTS, ifeval_prompts, score_ifeval)

CASES = [
    (WordCount(5, "at most"), "Tea is hot and good.", "Tea is hot and very good."),
    (WordCount(5, "at least"), "Tea is hot and good.", "Tea is hot."),
    (JsonFormat(), '{"answer": "tides follow the moon"}', 'Here: {"answer": 1}'),
    (JsonFormat(), '```json\n{"a": [1, 2]}\n```', "{'a': 1}"),
    (IncludeKeywords(("river", "water")), "The River carries water.", "The riverbank is dry."),
    (ForbiddenWords(("very",)), "Everything is fine.", "It is Very fine."),
    (Lowercase(), "all lowercase here, even 42.", "Not all lowercase."),
    (Lowercase(), "abc", "123"),
    (NoCommas(), "No commas at all.", "One, two."),
    (BulletList(2), "* first\n* second", "* first\n* second\n- third"),
    (EndsWith("Any questions?"), "Tides rise. Any questions?  \n", "Any questions? Yes."),
]


@pytest.mark.parametrize("instruction, passing, failing", CASES, ids=lambda v: type(v).__name__ if not isinstance(v, str) else "")
def test_each_checker_passes_and_fails_hand_written_responses(instruction, passing, failing):
    assert instruction.check(passing)
    assert not instruction.check(failing)


def test_generated_prompts_are_deterministic_and_never_pair_contradictory_instructions():
    a, b = ifeval_prompts(200, seed=0), ifeval_prompts(200, seed=0)
    assert [i.prompt for i in a] == [i.prompt for i in b]
    assert [i.prompt for i in ifeval_prompts(200, seed=1)] != [i.prompt for i in a]
    for item in a:
        kinds = [type(i).__name__ for i in item.instructions]
        assert 1 <= len(kinds) <= 3 and len(set(kinds)) == len(kinds)
        assert not any(frozenset({x, y}) in _CONFLICTS for x in kinds for y in kinds if x != y)
        assert all(i.describe() in item.prompt for i in item.instructions)
        assert item.id.startswith(f"ifeval:v{VERSION}:")
    assert len({type(i).__name__ for item in a for i in item.instructions}) == 8


def test_strict_and_loose_scores_follow_ifeval():
    items = [IFItem("tea", (JsonFormat(), WordCount(10, "at most"))), IFItem("tea", (NoCommas(), Lowercase()))]
    responses = ['Sure, here it is:\n{"tea": "hot"}', "plain text, lowercase"]
    s = score_ifeval(items, responses)
    # strict: JSON fails (a preamble line), words pass; no-commas fails, lowercase passes
    assert s["instruction_strict"] == pytest.approx(2 / 4) and s["prompt_strict"] == 0.0
    # loose: dropping the first line makes the JSON valid
    assert s["instruction_loose"] == pytest.approx(3 / 4) and s["prompt_loose"] == pytest.approx(1 / 2)
    assert s["per_kind"] == {"JsonFormat": 0.0, "Lowercase": 1.0, "NoCommas": 0.0, "WordCount": 1.0}
    with pytest.raises(ValueError, match="one response per item"):
        score_ifeval(items, responses[:1])
