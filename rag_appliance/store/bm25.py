"""Text to BM25 sparse vectors, computed client-side by qdrant-edge's `Bm25` for both adapters.

Both adapters store the same vectors for the same text, so a collection's ranking does not
depend on its backend. What each side computes:

- a chunk (`document_vector`): one entry per distinct term (tokenised, lowercased, stopwords
  dropped, stemmed), weighted by BM25's saturated term frequency
  tf * (k + 1) / (tf + k * (1 - b + b * length / avg_len));
- a query (`query_vector`): weight 1.0 per distinct term;
- the engine: the sparse vector is created with Qdrant's IDF modifier, so a query scores each
  chunk with sum over shared terms of idf(term) * the chunk's weight, which is BM25. IDF counts
  the whole collection, whatever the search's filter (uncommitted chunks included).

Term ids are qdrant-edge's hashes of the terms, so a collection must be searched with the
tokeniser it was indexed with: its Bm25Config is recorded with the collection.
"""

from __future__ import annotations

import functools

import qdrant_edge as qe

from rag_appliance.errors import InvalidRequest
from rag_appliance.store.base import Bm25Config

# The name of the sparse vector beside the (unnamed) dense one.
VECTOR = "bm25"


def check_bm25(config: Bm25Config) -> Bm25Config:
    """The config if qdrant-edge's BM25 accepts it, else InvalidRequest."""
    if not isinstance(config, Bm25Config):
        raise InvalidRequest("the BM25 config must be a Bm25Config", param="bm25")
    for key in ("stemming", "stopwords"):
        if not isinstance(getattr(config, key), bool):
            raise InvalidRequest(f"BM25 {key} must be true or false", param="bm25")
    for key in ("k", "b", "avg_len"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"BM25 {key} must be a number", param="bm25")
    if not isinstance(config.language, str):
        raise InvalidRequest("the BM25 language must be a string", param="bm25")
    try:
        _model(config)
    except ValueError as exc:
        raise InvalidRequest(f"invalid BM25 config: {exc}", param="bm25") from None
    return config


def document_vector(config: Bm25Config, text: str | None) -> qe.SparseVector | None:
    """The chunk's term-frequency vector, or None when it has no term (nothing to store)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidRequest("a point's text_for_sparse must be a string", param="text_for_sparse")
    vector = _model(config).embed_document(text)
    # Stored empty, a sparse vector would count as present to Qdrant but match nothing.
    return vector if vector.indices else None


def query_vector(config: Bm25Config, text: str) -> qe.SparseVector:
    """The query's terms, weight 1 each (empty when the text has no term)."""
    return _model(config).embed_query(text)


@functools.lru_cache(maxsize=64)
def _model(config: Bm25Config) -> qe.Bm25:
    """qdrant-edge's BM25 for `config` (ValueError if it refuses it); built once per config."""
    return qe.Bm25(
        qe.Bm25Config(
            k=float(config.k),
            b=float(config.b),
            avg_len=float(config.avg_len),
            language=config.language,
            stopwords=None if config.stopwords else qe.StopwordsSet(),
            stemmer=None if config.stemming else qe.DisabledStemmer(),
        )
    )
