"""Knowledge categories of general text (report §3.1.2): planted labels, classifier accuracy on unseen documents."""

from collections import Counter

import pytest

from minillm.data.knowledge import CATEGORIES, category_shares, knowledge_chunks, train_knowledge_classifier, wiki_category


def test_wiki_category_reads_the_category_tags():
    assert wiki_category("text [[Category:1879 births]] [[Category:Physicists]]") == "people"
    assert wiki_category("[[Category:Living people]]") == "people"
    assert wiki_category("[[Category:Countries in Europe]]") == "places"
    assert wiki_category("[[Category:Alkanes]]") == "science_society"
    assert wiki_category("people born in countries, no tags") == "science_society"


def test_category_shares_are_word_weighted():
    shares = category_shares(["arts", "news", "arts"], [10, 20, 10])
    assert shares["arts"] == pytest.approx(0.5) and shares["people"] == 0
    assert set(shares) == set(CATEGORIES)


@pytest.fixture(scope="module")
def chunks():
    return knowledge_chunks(per_category=120, seed=0)


def test_knowledge_chunks_split_by_document(chunks):
    train, test = {t for _, t in chunks["train"]}, {t for _, t in chunks["test"]}
    assert not train & test
    assert set(Counter(c for c, _ in chunks["test"])) == set(CATEGORIES)


def test_knowledge_classifier_beats_chance_by_far_on_unseen_documents(chunks):
    clf = train_knowledge_classifier(chunks, seed=0)
    texts, labels = [t for _, t in chunks["test"]], [c for c, _ in chunks["test"]]
    pred = clf.predict(texts)
    accuracy = sum(p == y for p, y in zip(pred, labels)) / len(labels)
    assert accuracy >= 0.7                                    # chance: 0.2 for five balanced classes
    for category in ("arts", "news"):                         # sources with a style of their own
        idx = [i for i, y in enumerate(labels) if y == category]
        assert sum(pred[i] == category for i in idx) / len(idx) >= 0.9
