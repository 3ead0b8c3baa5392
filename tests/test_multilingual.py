"""Multilingual data (report §3.1.1): planted documents, character n-gram language id, per-language thresholds."""

import pytest

from minillm.data.classifier import FastTextConfig, train_fasttext
from minillm.data.multilingual import (LOCALES, char_features, language_shares, locale_documents,
                                       per_language_threshold)


def test_locale_documents_plant_copies_and_spam_deterministically():
    docs = locale_documents("de", 20, seed=0)
    assert docs == locale_documents("de", 20, seed=0)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("clean") == 20 and kinds.count("duplicate") == 2 and kinds.count("spam") == 1
    exact = [d for d in docs if d["kind"] == "duplicate"][0]
    assert exact["text"] == docs[exact["copy_of"]]["text"]
    with pytest.raises(ValueError, match="unknown language"):
        locale_documents("xx", 1)


def test_char_features_are_character_trigrams():
    assert len(char_features("ab").split()) == 2          # "_ab", "ab_"
    assert char_features("Ab") == char_features("ab")
    assert len(char_features("日本語").split()) == 3         # no spaces needed


def test_language_id_on_character_trigrams_tells_held_out_documents_apart():
    train, test = [], []
    for lang in LOCALES:
        docs = [d for d in locale_documents(lang, 40, seed=1, duplicates=0, spam=0)]
        train += [(lang, d["text"]) for d in docs[:30]]
        test += [(lang, d["text"]) for d in docs[30:]]
    clf = train_fasttext([char_features(t) for _, t in train], [lang for lang, _ in train], list(LOCALES),
                         FastTextConfig(word_ngrams=1, epochs=5, buckets=1 << 16), seed=0)
    pred = clf.predict([char_features(t) for _, t in test])
    accuracy = sum(p == lang for p, (lang, _) in zip(pred, test)) / len(test)
    assert accuracy >= 0.95


def test_per_language_threshold_is_median_plus_k_mads_within_each_language():
    values = {0: 1.0, 1: 2.0, 2: 3.0, 3: 10.0, 4: 20.0, 5: 30.0}
    langs = {0: "a", 1: "a", 2: "a", 3: "b", 4: "b", 5: "b"}
    assert per_language_threshold(values, langs, k=2) == {"a": 4.0, "b": 40.0}


def test_language_shares_sum_to_one():
    shares = language_shares(["en", "de", "en"], [3, 1, 4])
    assert shares == {"en": 7 / 8, "de": 1 / 8}
