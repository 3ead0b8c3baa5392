"""A fastText-style text classifier in torch: hashed bag of word n-grams → mean embedding → linear (report §3.1.1).

The report's model-based quality filtering uses "fast classifiers such as fasttext (Joulin et al., 2017)" next to
heavier Roberta-based ones, and a classifier of the same kind sorts web pages into knowledge categories for the data
mix (§3.1.2). fastText's architecture is small enough to write out:

    ids     = hash(w_i), hash(w_i w_{i+1}) mod buckets     # (L,) per document, the "hashing trick"
    h       = mean_i E[ids_i]                               # (dim,)  nn.EmbeddingBag(mode="mean")
    logits  = W h + b                                       # (classes,)

Training is cross-entropy with Adam (``SparseAdam`` on the embedding rows a batch uses). Hashes are
``zlib.crc32`` (stable across processes, unlike ``hash``).
"""

from __future__ import annotations

import contextlib
import re
import zlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

_TOKEN = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class FastTextConfig:
    """Hyper-parameters: hash ``buckets``, embedding ``dim``, word n-grams up to ``word_ngrams``, training schedule."""

    buckets: int = 1 << 18
    dim: int = 32
    word_ngrams: int = 2
    max_tokens: int = 400
    epochs: int = 8
    lr: float = 0.02
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("buckets", "dim", "word_ngrams", "max_tokens", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"FastTextConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"FastTextConfig.lr must be > 0, got {self.lr}")


def ngram_ids(text: str, config: FastTextConfig) -> list[int]:
    """Hashed ids of the first ``max_tokens`` tokens of ``text`` and of their n-grams up to ``word_ngrams``."""
    toks = _TOKEN.findall(text.lower())[: config.max_tokens] or ["<empty>"]
    ids = []
    for n in range(1, config.word_ngrams + 1):
        for i in range(len(toks) - n + 1):
            ids.append(zlib.crc32(" ".join(toks[i:i + n]).encode("utf-8")) % config.buckets)
    return ids


def batch_ids(texts: Sequence[str], config: FastTextConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, offsets)`` for ``nn.EmbeddingBag``: all documents' ids concatenated ``(sum L,)`` and starts ``(N,)``."""
    per_doc = [ngram_ids(t, config) for t in texts]
    offsets = torch.tensor([0] + [len(ids) for ids in per_doc[:-1]], dtype=torch.long).cumsum(0)
    return torch.tensor([i for ids in per_doc for i in ids], dtype=torch.long), offsets


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: the ops here are tiny, and on a shared 2-core machine a second
    OpenMP thread spins waiting for the busy core (we measured 10x slowdowns)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class FastText(nn.Module):
    """Bag of hashed n-grams → mean embedding ``(N, dim)`` → class logits ``(N, classes)``."""

    def __init__(self, classes: Sequence[str], config: FastTextConfig = FastTextConfig()) -> None:
        super().__init__()
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {list(classes)}")
        self.classes = list(classes)
        self.config = config
        self.embed = nn.EmbeddingBag(config.buckets, config.dim, mode="mean", sparse=True)  # sparse gradients
        self.out = nn.Linear(config.dim, len(classes))
        nn.init.uniform_(self.embed.weight, -1.0 / config.dim, 1.0 / config.dim)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids, offsets))  # (N, dim) -> (N, classes)

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 512) -> torch.Tensor:
        """Class probabilities ``(len(texts), classes)``."""
        self.eval()
        with one_thread():
            parts = [torch.softmax(self(*batch_ids(texts[i:i + batch_size], self.config)), -1)
                     for i in range(0, len(texts), batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, len(self.classes))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable class name of each text."""
        return [self.classes[i] for i in self.predict_proba(texts).argmax(-1).tolist()]


def train_fasttext(texts: Sequence[str], labels: Sequence[str], classes: Sequence[str] | None = None,
                   config: FastTextConfig = FastTextConfig(), seed: int = 0) -> FastText:
    """Train a ``FastText`` on ``texts`` with string ``labels`` (classes sorted unless given). Deterministic for a
    seed; each class is weighted by the inverse of its frequency, so that a rare class is not ignored."""
    if len(texts) != len(labels) or not texts:
        raise ValueError(f"texts and labels must be non-empty and of equal length, got {len(texts)} and {len(labels)}")
    classes = sorted(set(labels)) if classes is None else list(classes)
    unknown = set(labels) - set(classes)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not in classes {classes}")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = FastText(classes, config)
    y = torch.tensor([classes.index(label) for label in labels])                    # (N,)
    counts = torch.bincount(y, minlength=len(classes)).clamp(min=1).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (len(classes) * counts))
    optimizers = [torch.optim.SparseAdam(model.embed.parameters(), lr=config.lr),  # only the rows a batch touches
                  torch.optim.Adam(model.out.parameters(), lr=config.lr)]
    features = [ngram_ids(t, config) for t in texts]
    model.train()
    with one_thread():
        _train(model, features, y, loss_fn, optimizers, config, generator)
    return model.eval()


def _train(model, features, y, loss_fn, optimizers, config, generator) -> None:
    """Mini-batch epochs over hashed features ``features[i]`` (lists of ids) with targets ``y`` ``(N,)``."""
    for _ in range(config.epochs):
        order = torch.randperm(len(features), generator=generator).tolist()
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            ids = torch.tensor([i for b in batch for i in features[b]], dtype=torch.long)
            offsets = torch.tensor([0] + [len(features[b]) for b in batch[:-1]], dtype=torch.long).cumsum(0)
            loss = loss_fn(model(ids, offsets), y[batch])
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
