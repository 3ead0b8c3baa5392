"""Pre-training data (report §3.1): raw documents from offline sources, then cleaning, deduplication and mixing."""

from minillm.data.sources import (
    SOURCES,
    Document,
    available_sources,
    raw_documents,
    source_versions,
    strip_wiki_markup,
)

__all__ = ["SOURCES", "Document", "available_sources", "raw_documents", "source_versions", "strip_wiki_markup"]
