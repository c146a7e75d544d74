"""A collection's fields and indexes as the Milvus adapter creates them (see milvus_rows).

Indexes: the dense vector is FLAT on Milvus Lite (exact search: Lite's brute force, the right
choice at its few-thousand-point scale, and no FAISS build per flushed segment) and HNSW on a
server (M 16, efConstruction 200; searched with ef = max(limit, 64), since Milvus refuses an ef
below the limit). Lite also accepts IVF_FLAT, HNSW (FAISS) and AUTOINDEX (HNSW there). The
sparse vector is a SPARSE_INVERTED_INDEX with the IP metric (exact, as Lite always is). On a
server, the mirrored keys, the flags and the term ids get INVERTED scalar indexes; Lite refuses
a scalar index on an ARRAY and filters its scalar columns fast without one.
"""

from __future__ import annotations

from typing import Any

from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from rag_appliance.store.base import Provenance
from rag_appliance.store.milvus_client import MilvusConn, properties
from rag_appliance.store.milvus_rows import (
    HAS_TERMS,
    ID,
    IRREGULAR,
    MAX_TERMS,
    MAX_VARCHAR,
    MIRRORS,
    PAYLOAD,
    SPARSE,
    TERMS,
    VECTOR,
)
from rag_appliance.store.server_meta import Meta

_HNSW = {"M": 16, "efConstruction": 200}
_MIN_EF = 64
_KINDS = {"str": DataType.VARCHAR, "int": DataType.INT64, "bool": DataType.BOOL}


def create(conn: MilvusConn, name: str, provenance: Provenance, meta: Meta) -> None:
    """Create collection `name` with its properties (no indexes yet: ensure_indexes); a
    collection made meanwhile (by another replica) is kept."""
    full = conn.full(name)
    client = conn.client
    if client.has_collection(full, timeout=conn.timeout):
        return
    try:
        client.create_collection(
            full,
            schema=_schema(provenance.dimension),
            consistency_level="Strong",  # reads see every acknowledged write
            properties=properties(name, meta),
            timeout=conn.timeout,
        )
    except MilvusException:
        if not client.has_collection(full, timeout=conn.timeout):
            raise


def ensure_indexes(conn: MilvusConn, name: str) -> None:
    """Create the indexes the collection lacks: all of a new one, those a creation interrupted
    by a crash left out (the caller loads it afterwards)."""
    full = conn.full(name)
    client = conn.client
    with conn.call(name):
        present = set(client.list_indexes(full, timeout=conn.timeout))
    indexes = client.prepare_index_params()
    for field, spec in _indexes(conn).items():
        if field not in present:
            indexes.add_index(field, index_name=field, **spec)
    if len(indexes):
        # sync=False: pymilvus otherwise polls each index's state with a 0.5 s sleep; the
        # load waits for them.
        with conn.call(name):
            client.create_index(full, indexes, timeout=conn.timeout, sync=False)


def _indexes(conn: MilvusConn) -> dict[str, dict[str, Any]]:
    """Each indexed field's index (see the module docstring)."""
    indexes: dict[str, dict[str, Any]] = {}
    if conn.lite:
        indexes[VECTOR] = {"index_type": "FLAT", "metric_type": "COSINE"}
    else:
        indexes[VECTOR] = {"index_type": "HNSW", "metric_type": "COSINE", "params": _HNSW}
        for field in (*MIRRORS, IRREGULAR, HAS_TERMS, TERMS):
            indexes[field] = {"index_type": "INVERTED"}
    indexes[SPARSE] = {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "IP"}
    return indexes


def dense_params(conn: MilvusConn, limit: int) -> dict[str, Any]:
    """The search parameters of a dense search for `limit` results."""
    if conn.lite:
        return {"metric_type": "COSINE"}
    return {"metric_type": "COSINE", "params": {"ef": max(limit, _MIN_EF)}}


SPARSE_PARAMS: dict[str, Any] = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}


def _schema(dimension: int) -> Any:
    """The fields of every collection (milvus_rows), for vectors of `dimension`."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ID, DataType.VARCHAR, is_primary=True, max_length=36)
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field(TERMS, DataType.ARRAY, element_type=DataType.INT64, max_capacity=MAX_TERMS)
    schema.add_field(HAS_TERMS, DataType.BOOL)
    schema.add_field(PAYLOAD, DataType.JSON)
    schema.add_field(IRREGULAR, DataType.BOOL)
    for key, kind in MIRRORS.items():
        extra = {"max_length": MAX_VARCHAR} if kind == "str" else {}
        schema.add_field(key, _KINDS[kind], nullable=True, **extra)
    return schema
