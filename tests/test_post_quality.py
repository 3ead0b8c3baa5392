"""Quality control (report §4.2.3): semantic dedup with all-MiniLM-L6-v2 on planted near-duplicates, RM top quartile,
difficulty from pass rates, topics."""

import random

import pytest
import torch

from minillm.eval.math import MathItem
from minillm.post import (QualityConfig, pass_rate_difficulty, select_data, semantic_dedup, top_fraction, topic_of,
                          train_topic_classifier)
from minillm.post.data import instruction
from minillm.post.quality_control import chat_text, quantile_ranks

TEXTS = [
    "user: What is the capital of France?\nassistant: Paris.",
    "user: what is the capital of france\nassistant: Paris",                      # near-duplicate of 0
    "user: How do I boil an egg?\nassistant: Put it in boiling water for nine minutes.",
    "user: How do I boil an egg, please?\nassistant: Put it in boiling water for 9 minutes.",   # of 2
    "user: Calculate 5 - 3.\nassistant: The answer is 2.",
    "user: Calculate 7 * 6.\nassistant: The answer is 42.",                       # similar topic, not a duplicate
    "user: Calculate 5 - 3 .\nassistant: The answer is 2",                        # of 4
    "user: Name a prime number larger than ten.\nassistant: Eleven.",
    "user: Translate 'good morning' into German.\nassistant: Guten Morgen.",
    "user: Who wrote Hamlet?\nassistant: William Shakespeare.",
    "user: How many legs does a spider have?\nassistant: Eight.",
    "user: how many legs does a spider have\nassistant: eight",                   # of 10
]
GROUPS = [(0, 1), (2, 3), (4, 6), (10, 11)]


@pytest.fixture(scope="module")
def embeddings():
    from minillm.post import embed_texts

    return embed_texts(TEXTS)


def test_embeddings_are_unit_vectors_and_planted_duplicates_are_the_closest_pairs(embeddings):
    assert embeddings.shape == (len(TEXTS), 384)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    sim = embeddings @ embeddings.T
    planted = {frozenset(g) for g in GROUPS}
    for i in range(len(TEXTS)):
        for j in range(i + 1, len(TEXTS)):
            assert (sim[i, j] > 0.9) == (frozenset((i, j)) in planted), (TEXTS[i], TEXTS[j], float(sim[i, j]))


@pytest.mark.parametrize("n_clusters", [1, 3])
def test_semantic_dedup_keeps_the_best_of_each_planted_group_and_everything_else(embeddings, n_clusters):
    rng = random.Random(0)
    quality = torch.tensor([rng.uniform(0.2, 1.0) for _ in TEXTS])
    difficulty = torch.tensor([rng.uniform(0.2, 1.0) for _ in TEXTS])
    value = quality * difficulty
    kept = semantic_dedup(embeddings, quality, difficulty, threshold=0.9, n_clusters=n_clusters)
    losers = {min(g, key=lambda i: value[i]) for g in GROUPS}                   # the lower quality × difficulty
    assert kept == [i for i in range(len(TEXTS)) if i not in losers]
    # flip the order inside each group: the other member survives
    flipped = value.clone()
    for a, b in GROUPS:
        flipped[a], flipped[b] = value[b], value[a]
    kept = semantic_dedup(embeddings, flipped, torch.ones(len(TEXTS)), threshold=0.9, n_clusters=n_clusters)
    assert kept == [i for i in range(len(TEXTS)) if i not in {b if a in losers else a for a, b in GROUPS}]


def test_a_lower_threshold_also_merges_problems_of_one_kind(embeddings):
    ones = torch.ones(len(TEXTS))
    assert 5 in semantic_dedup(embeddings, ones, ones, threshold=0.9)
    assert 5 not in semantic_dedup(embeddings, ones, ones, threshold=0.7)       # "7 * 6" is close to "5 - 3"


def test_select_data_takes_the_rm_top_quartile_then_dedups(embeddings):
    chats = [[{"role": "user", "content": t.split("\n")[0][6:]}, {"role": "assistant", "content": t.split("\n")[1][11:]}]
             for t in TEXTS]
    assert chat_text(chats[0]) == TEXTS[0]
    index = {t: i for i, t in enumerate(TEXTS)}
    scores = torch.arange(len(TEXTS), dtype=torch.float)                         # the last ones are best
    keep, stats = select_data(chats, scores, torch.ones(len(TEXTS)), QualityConfig(quality_fraction=0.5),
                              embed=lambda texts: embeddings[[index[t] for t in texts]])
    # top half: 6..11; 10 and 11 are duplicates and 11 has the higher RM score
    assert keep == [6, 7, 8, 9, 11] and stats == {"candidates": 12, "after_quality": 6, "after_dedup": 5}


def test_top_fraction_is_the_top_quartile_and_difficulty_is_the_failure_rate():
    scores = torch.tensor([0.1, 5.0, -2.0, 3.0, 0.0, 4.0, 1.0, 2.0])
    assert top_fraction(scores, 0.25).tolist() == [False, True, False, False, False, True, False, False]
    assert top_fraction(scores[:3], 0.25).sum() == 1                            # ceil(0.75)
    assert quantile_ranks(torch.tensor([3.0, -1.0, 7.0])).tolist() == pytest.approx([2 / 3, 1 / 3, 1.0])
    checks = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.5, 1.0, 1.0]])
    assert pass_rate_difficulty(checks).tolist() == pytest.approx([0.5, 1.0, 0.25])   # partial credit is a failure


def _item(expr: str) -> MathItem:
    return MathItem("basic_arithmetic", 0, f"Calculate {expr}.", "0", {"metadata": {"expression": expr}})


def test_topics_name_the_operation_and_a_classifier_learns_them_from_templated_prompts():
    assert [topic_of(_item(e)) for e in ("2 - -1", "( -9 / 9 )", "-3 * 4", "5 + -5")] == \
           ["subtraction", "division", "multiplication", "addition"]
    assert topic_of(MathItem("gcd", 0, "q", "1", {"metadata": {}})) == "gcd"
    rng = random.Random(0)
    ops = ["+", "-", "*", "/"]
    items = [_item(f"{rng.randint(-9, 9)} {rng.choice(ops)} {rng.randint(1, 9)}") for _ in range(400)]
    texts = [instruction(i, rng) for i in items]
    clf = train_topic_classifier(texts[:300], [topic_of(i) for i in items[:300]])
    predicted = clf.predict(texts[300:])
    accuracy = sum(p == topic_of(i) for p, i in zip(predicted, items[300:])) / 100
    assert accuracy > 0.9
