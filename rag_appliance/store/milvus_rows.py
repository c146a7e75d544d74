"""A point as a Milvus row, and back: the fields of a collection, the payload's encoding, the
scalar copies of the keys the pipeline filters by, and the BM25 sparse vector with its terms.

Every collection has the same fields (milvus_schema creates them):

- `id` (VARCHAR primary key, the canonical UUID), `vector` (the dense vector, COSINE);
- `payload` (JSON): the whole payload, with JSON booleans stored as marker strings (`encode`).
  Milvus Lite evaluates filters with Python semantics, where `true == 1` and `true >= 0`; with
  the markers a Match on True never holds for the integer 1 (nor a Match on 1 or a Range for
  True), as on Qdrant. A string that starts with the marker gets a second one, so the encoding
  is reversible; `decode` undoes it when a payload is read;
- the mirrors `doc_id`, `content_hash` (VARCHAR), `chunk_index` (INT64) and `committed` (BOOL):
  nullable scalar copies of those payload keys, set when the payload holds a value of that type
  (null otherwise), so the pipeline's filters run on scalar columns instead of JSON paths;
- `irregular` (BOOL): whether a mirrored key holds a value its column cannot (a list, another
  type, a string over 65535 bytes); filters reach those rows through the JSON payload;
- `sparse` (SPARSE_FLOAT_VECTOR, IP), `terms` (ARRAY<INT64>) and `has_terms` (BOOL): the BM25
  term weights, the term ids (for document frequencies, milvus_search) and whether there are
  any. Milvus refuses an empty sparse vector, so a point without terms stores the SENTINEL
  dimension, which no query contains. Every collection has them, dense-only ones too, so that
  enable_sparse needs no schema change (Milvus Lite cannot alter a schema).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from rag_appliance.errors import InvalidRequest
from rag_appliance.store import bm25
from rag_appliance.store.base import BOOL_INDEXES, INTEGER_INDEXES, KEYWORD_INDEXES, Bm25Config

ID = "id"
VECTOR = "vector"
PAYLOAD = "payload"
SPARSE = "sparse"
TERMS = "terms"
HAS_TERMS = "has_terms"
IRREGULAR = "irregular"

MirrorKind = Literal["str", "int", "bool"]
# Payload keys copied to scalar columns of the same name, with their column's kind.
MIRRORS: dict[str, MirrorKind] = {
    **dict.fromkeys(KEYWORD_INDEXES, "str"),
    **dict.fromkeys(INTEGER_INDEXES, "int"),
    **dict.fromkeys(BOOL_INDEXES, "bool"),
}
# The longest string (UTF-8 bytes) a VARCHAR mirror holds: Milvus' VARCHAR limit.
MAX_VARCHAR = 65535
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# A private-use character: marks JSON booleans in the stored payload (see the module docstring).
MARK = "\ue000"
TRUE = MARK + "T"
FALSE = MARK + "F"

# Milvus accepts sparse dimensions 0 .. 2**32 - 2; term ids are 32-bit hashes. The top one that
# Milvus accepts marks "no terms"; the two ids from it up are folded onto the one below, in
# documents and queries alike (a collision of 3 in 2**32 hashes).
SENTINEL = 2**32 - 2
FOLDED = 2**32 - 3
# Milvus' largest ARRAY: the most distinct terms a point may have.
MAX_TERMS = 4096


def encode(value: Any) -> Any:
    """A JSON value with its booleans as marker strings (and marked strings escaped)."""
    if isinstance(value, bool):
        return TRUE if value else FALSE
    if isinstance(value, str):
        return encode_string(value)
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def encode_string(value: str) -> str:
    """A string as stored: one more marker in front when it starts with one."""
    return MARK + value if value.startswith(MARK) else value


def decode(value: Any) -> Any:
    """The JSON value that `encode` stored."""
    if isinstance(value, str):
        if not value.startswith(MARK):
            return value
        rest = value[1:]
        if rest == "T":
            return True
        if rest == "F":
            return False
        return rest  # an escaped string: it started with the marker
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    return value


def mirror_value(kind: MirrorKind, value: Any) -> Any:
    """The value as its mirror column holds it, None if the column cannot hold it."""
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok and INT64_MIN <= value <= INT64_MAX else None
    ok = isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) <= MAX_VARCHAR
    return value if ok else None


def mirrors(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The mirror columns and the `irregular` flag of a (decoded) payload."""
    row: dict[str, Any] = {}
    irregular = False
    for key, kind in MIRRORS.items():
        raw = payload.get(key)
        row[key] = mirror_value(kind, raw)
        # JSON null is no value: no Match holds for it, as for a missing key.
        irregular = irregular or (raw is not None and row[key] is None)
    row[IRREGULAR] = irregular
    return row


def payload_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The row fields that hold a (decoded) payload: the JSON, the mirrors, `irregular`."""
    return {PAYLOAD: encode(dict(payload)), **mirrors(payload)}


def merged_payload_fields(stored: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """The payload fields after merging `update`'s keys into a stored (encoded) payload."""
    merged = {**stored, **encode(dict(update))}
    decoded = {key: decode(merged.get(key)) for key in MIRRORS}
    return {PAYLOAD: merged, **mirrors(decoded)}


def sparse_fields(config: Bm25Config | None, text: str | None) -> dict[str, Any]:
    """The sparse vector, terms and has_terms of a point's text under `config` (None: none)."""
    vector = None if config is None else bm25.document_vector(config, text)
    if vector is None:
        return {SPARSE: {SENTINEL: 1.0}, TERMS: [], HAS_TERMS: False}
    weights: dict[int, float] = {}
    for index, value in zip(vector.indices, vector.values, strict=True):
        term = fold(int(index))
        weights[term] = weights.get(term, 0.0) + float(value)
    if len(weights) > MAX_TERMS:
        raise InvalidRequest(
            f"the milvus backend stores at most {MAX_TERMS} distinct BM25 terms per point "
            f"(Milvus' largest ARRAY); this text has {len(weights)}: split it into smaller "
            "chunks",
            param="text_for_sparse",
        )
    return {SPARSE: weights, TERMS: sorted(weights), HAS_TERMS: True}


def fold(term: int) -> int:
    """A term id as a Milvus sparse dimension (see SENTINEL)."""
    return term if term < SENTINEL else FOLDED


def query_terms(indices: Sequence[int]) -> list[int]:
    """A query's distinct term ids as Milvus sparse dimensions, in order."""
    return list(dict.fromkeys(fold(int(i)) for i in indices))


def idf(points: int, with_term: int) -> float:
    """BM25's IDF as Qdrant computes it: ln(1 + (N - n + 0.5) / (n + 0.5))."""
    return math.log(1.0 + (points - with_term + 0.5) / (with_term + 0.5))


def stored_payload(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of a row Milvus returned, decoded."""
    raw = entity.get(PAYLOAD)
    if not isinstance(raw, dict):
        return {}
    payload: dict[str, Any] = decode(raw)
    return payload
