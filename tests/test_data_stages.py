"""The curation stages one by one, each against a hand-made or independently generated reference."""

import random
from collections import Counter

import pytest
import torch

from minillm.data import plants
from minillm.data.annealing import select_annealing
from minillm.data.classifier import FastTextConfig, train_fasttext
from minillm.data.crawl import CrawlConfig, Page
from minillm.data.extract import MARKDOWN_RESIDUE, extract, extract_page, strip_markdown
from minillm.data.filters import (HeuristicConfig, TokenDistribution, dirty_word_ratio, dup_ngram_ratio,
                                  heuristic_reason, heuristic_stats)
from minillm.data.line_dedup import line_dedup
from minillm.data.mix import REPORT_MIX, mix_weights, mixture, sample_mix
from minillm.data.pii import find_pii, redact_pii
from minillm.data.pipeline import PipelineConfig
from minillm.data.url_dedup import url_dedup

PROSE = ("The committee met on Tuesday to discuss the new budget for the city library. "
         "Members argued about opening hours, the cost of new books and the state of the roof.")


# ------------------------------------------------------------------------------------------------ extract
def test_extract_keeps_text_and_code_drops_scripts_and_markdown():
    page = ("<html><head><title>T</title><script>var secret = 1;</script><style>p {color: red}</style></head>"
            "<body><div>Home | About</div><p>Some **bold** and [a link](https://x.org) here.</p>"
            "<h2>## Heading</h2><ul><li>- item one</li></ul>"
            "<pre><code>def f(x):\n    # keep **this**\n    return x * 2</code></pre></body></html>")
    text = extract(page)
    assert "secret" not in text and "color" not in text
    assert text.split("\n")[:4] == ["Home | About", "Some bold and a link here.", "Heading", "item one"]
    assert "def f(x):\n    # keep **this**\n    return x * 2" in text  # <pre> verbatim


def test_strip_markdown_removes_every_planted_marker():
    rng = random.Random(0)
    marked = plants.add_markdown("\n".join([PROSE] * 20), rng)
    assert MARKDOWN_RESIDUE.search(marked)
    clean = strip_markdown(marked)
    assert not MARKDOWN_RESIDUE.search(clean)
    assert "snake_case_name stays" in strip_markdown("snake_case_name stays")


@pytest.mark.parametrize("raw, issue, kept", [
    (b"", "empty", False),
    (b"<html><body>   </body></html>", "empty", False),
    ("<p>caf\u00e9 na\u00efve</p>".encode("cp1252"), "non_utf8", True),
    (b"\xff\xfe\x00garbage\x81\x8d bytes", "non_utf8", True),
    (b"<html><body><p>text that is cut off <<b>and <a href='x", "broken_html", True),
])
def test_bad_input_is_cleaned_or_skipped_and_named(raw, issue, kept):
    text, found = extract_page(raw)
    assert found == issue and (text is not None) == kept


def test_a_50_mb_page_is_skipped_before_parsing():
    huge = b"<p>" + b"lorem ipsum " * (50_000_000 // 12 + 1) + b"</p>"
    assert len(huge) >= 50_000_000
    assert extract_page(huge, max_bytes=2_000_000) == (None, "too_large")


def test_cp1252_page_is_decoded_correctly():
    text, issue = extract_page("<p>Caf\u00e9 \u2014 na\u00efve</p>".encode("cp1252"))
    assert (text, issue) == ("Caf\u00e9 \u2014 na\u00efve", "non_utf8")


# ------------------------------------------------------------------------------------------------ url / line dedup
def test_url_dedup_keeps_the_newest_crawl_regardless_of_order():
    pages = [Page(0, "a", 5, b""), Page(1, "b", 1, b""), Page(2, "a", 9, b""), Page(3, "a", 7, b""),
             Page(4, "c", 3, b"")]
    assert [p.id for p in url_dedup(pages)] == [1, 2, 4]
    records = [{"url": "x", "timestamp": 2}, {"url": "x", "timestamp": 2}]
    assert url_dedup(records) == [records[1]]  # a tie: the later record wins


def test_line_dedup_removes_lines_seen_in_more_than_max_repeats_documents_per_bucket():
    banner = "We use cookies. Accept all"
    texts = [f"{banner}\nunique line {i}\nshared by few" if i < 3 else f"{banner}\nunique line {i}"
             for i in range(10)]
    out = line_dedup(texts, max_repeats=6)
    assert out[0] == "unique line 0\nshared by few" and out[9] == "unique line 9"
    assert line_dedup(texts, max_repeats=10) == texts
    # in buckets of 5 the banner occurs 5 times per bucket: kept
    assert line_dedup(texts, max_repeats=6, bucket_size=5) == texts
    variants = [f"{'  We USE cookies.   accept ALL' if i % 2 else banner}\nline {i}" for i in range(8)]
    assert line_dedup(variants)[1] == "line 1"  # lines are normalised (case, spaces) before counting
    with pytest.raises(ValueError, match="max_repeats"):
        line_dedup(texts, max_repeats=0)


# ------------------------------------------------------------------------------------------------ heuristics
def test_dup_ngram_ratio_flags_log_spam_not_prose():
    rng = random.Random(0)
    assert dup_ngram_ratio(plants.spam_page(rng)) > 0.9
    assert dup_ngram_ratio(PROSE) == 0.0
    assert dup_ngram_ratio(" ".join(["alpha beta gamma delta epsilon zeta eta theta iota kappa"] * 3)) == 1.0


def test_dirty_word_ratio_counts_listed_words():
    assert dirty_word_ratio("free porn and casino bonus now here") == pytest.approx(2 / 7)
    assert dirty_word_ratio(PROSE) == 0.0 and dirty_word_ratio("") == 0.0
    rng = random.Random(1)
    assert dirty_word_ratio(plants.dirty_page("\n".join([PROSE] * 10), rng)) > 0.03


def test_kl_divergence_separates_garbage_from_text_of_the_corpus():
    rng = random.Random(2)
    prose = [" ".join(rng.sample(PROSE.split() * 3, 40)) for _ in range(50)]
    garbage = [plants.garbage_page(rng) for _ in range(3)]
    corpus = TokenDistribution.from_texts(prose + garbage)
    assert max(corpus.kl(t) for t in prose) < 1.0 < 3.5 < min(corpus.kl(t) for t in garbage)
    assert corpus.kl("") == 0.0


def test_heuristic_reason_names_the_first_failed_filter_and_config_validates():
    config = HeuristicConfig()
    corpus = TokenDistribution.from_texts([PROSE])
    assert heuristic_reason(heuristic_stats("too short", corpus, config), config) == "too_short"
    stats = dict(words=100.0, dup_ngram=0.0, dirty=0.5, kl=0.0)
    assert heuristic_reason(stats, config) == "dirty_words"
    with pytest.raises(ValueError, match="max_dirty_ratio"):
        HeuristicConfig(max_dirty_ratio=2.0)


# ------------------------------------------------------------------------------------------------ PII
def test_pii_redaction_recalls_faker_generated_emails_phones_and_ips():
    from faker import Faker

    faker, rng = Faker("en_US"), random.Random(3)
    faker.seed_instance(3)
    text, planted = plants.insert_pii("\n".join([PROSE] * 30), faker, rng, count=300)
    redacted, counts = redact_pii(text)
    recall = sum(value not in redacted for value in planted) / len(planted)
    assert recall >= 0.95
    assert sum(counts.values()) <= len(planted) + 5  # nothing much else redacted
    assert redact_pii(PROSE) == (PROSE, Counter())
    assert find_pii("mail bob@example.org or 10.0.0.1") == [("EMAIL", "bob@example.org"), ("IP", "10.0.0.1")]


# ------------------------------------------------------------------------------------------------ classifier, mix
def test_fasttext_learns_a_bag_of_words_task_and_is_deterministic():
    rng = random.Random(4)
    a = [" ".join(rng.choices(["cat", "dog", "mouse", "pet"], k=20)) for _ in range(60)]
    b = [" ".join(rng.choices(["stock", "bond", "market", "price"], k=20)) for _ in range(60)]
    config = FastTextConfig(buckets=1 << 12, dim=8, epochs=5)
    model = train_fasttext(a + b, ["pets"] * 60 + ["money"] * 60, config=config, seed=0)
    assert model.predict(["my dog and cat", "bond market price"]) == ["pets", "money"]
    again = train_fasttext(a + b, ["pets"] * 60 + ["money"] * 60, config=config, seed=0)
    assert torch.equal(model.embed.weight, again.embed.weight)
    with pytest.raises(ValueError, match="dim"):
        FastTextConfig(dim=0)


def test_mix_weights_reach_the_renormalised_target_within_the_epoch_cap():
    tokens = {"general": 1000.0, "math": 100.0, "code": 300.0}
    weights = mix_weights(tokens, REPORT_MIX, max_epochs=4.0)
    achieved = mixture(tokens, weights)
    present = REPORT_MIX["general"] + REPORT_MIX["math"] + REPORT_MIX["code"]
    for d in tokens:
        assert achieved[d] == pytest.approx(REPORT_MIX[d] / present)
    assert weights["multilingual"] == 0.0 and max(weights.values()) == pytest.approx(4.0)
    counts = Counter(sample_mix(["math"] * 100 + ["general"] * 100, {"math": 2.5, "general": 0.5}, seed=0))
    assert sum(counts[i] for i in range(100)) == pytest.approx(250, abs=25)


def test_annealing_takes_the_best_math_and_code_within_budget():
    domains = ["math", "code", "general", "math", "code"]
    scores = [0.9, 0.95, 0.99, 0.4, 0.7]
    tokens = [100, 100, 100, 100, 100]
    assert select_annealing(domains, scores, tokens, budget_tokens=200) == [0, 1]
    assert select_annealing(domains, scores, tokens, budget_tokens=1000) == [0, 1, 4]


def test_configs_name_the_bad_field():
    with pytest.raises(ValueError, match="clean_pages"):
        CrawlConfig(clean_pages=1)
    with pytest.raises(ValueError, match="near_dup"):
        CrawlConfig(near_dup=0.9)
    with pytest.raises(ValueError, match="workers"):
        PipelineConfig(workers=0)
    with pytest.raises(ValueError, match="minhash_threshold"):
        PipelineConfig(minhash_threshold=1.5)


def test_stacked_line_start_markdown_markers_are_all_removed():
    from minillm.data.extract import strip_markdown
    out = strip_markdown("- # Dennis Tito\n## > quoted")
    assert "#" not in out and ">" not in out and out.split() == ["Dennis", "Tito", "quoted"]
