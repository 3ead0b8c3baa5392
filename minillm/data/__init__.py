"""Pre-training data (report §3.1): raw documents from offline sources, a synthetic crawl with planted problems, and
the curation stages (extraction, URL/MinHash/line dedup, heuristic filters, PII redaction, quality and domain
classifiers, data mix, annealing set), each scored against the planted truth."""

from minillm.data.annealing import arithmetic_drills, select_annealing
from minillm.data.classifier import FastText, FastTextConfig, train_fasttext
from minillm.data.corpus import build_corpus, curated_corpus, load_corpus, store_corpus
from minillm.data.crawl import Crawl, CrawlConfig, CrawlTruth, Page, build_crawl
from minillm.data.evaluate import evaluate
from minillm.data.extract import extract, extract_page, strip_markdown
from minillm.data.filters import (DIRTY_WORDS, HeuristicConfig, TokenDistribution, dirty_word_ratio,
                                  dup_ngram_ratio)
from minillm.data.line_dedup import line_dedup
from minillm.data.minhash import (candidate_probability, jaccard, lsh_params, minhash_clusters, minhash_dedup,
                                  minhash_signatures, minhash_signatures_reference)
from minillm.data.mix import REPORT_MIX, mix_weights, train_domain_classifier
from minillm.data.pii import find_pii, redact_pii
from minillm.data.pipeline import CurationResult, PipelineConfig, run_pipeline
from minillm.data.quality import train_quality_classifier
from minillm.data.sources import (
    SOURCES,
    Document,
    available_sources,
    raw_documents,
    source_versions,
    strip_wiki_markup,
)
from minillm.data.url_dedup import url_dedup

__all__ = [
    "SOURCES", "Document", "available_sources", "raw_documents", "source_versions", "strip_wiki_markup",
    "Crawl", "CrawlConfig", "CrawlTruth", "Page", "build_crawl",
    "extract", "extract_page", "strip_markdown", "url_dedup", "minhash_dedup", "minhash_clusters",
    "minhash_signatures", "minhash_signatures_reference", "jaccard", "lsh_params", "candidate_probability",
    "line_dedup", "DIRTY_WORDS", "HeuristicConfig", "TokenDistribution", "dirty_word_ratio", "dup_ngram_ratio",
    "find_pii", "redact_pii", "FastText", "FastTextConfig", "train_fasttext", "train_quality_classifier",
    "train_domain_classifier", "REPORT_MIX", "mix_weights", "select_annealing", "arithmetic_drills",
    "PipelineConfig", "CurationResult", "run_pipeline", "evaluate", "build_corpus", "curated_corpus", "load_corpus",
    "store_corpus",
]
