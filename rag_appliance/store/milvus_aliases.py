"""The Milvus store's aliases: Milvus' own (`create_alias`, `alter_alias`: one atomic switch).

Alias names are namespaced like collection names (the store's prefix, escaped), so stores with
different prefixes on one server never see each other's aliases.
"""

from __future__ import annotations

import contextlib

from pymilvus import MilvusException

from rag_appliance.store.aliases import alias_not_found, check_alias
from rag_appliance.store.milvus_client import MilvusConn


def read(conn: MilvusConn) -> dict[str, str]:
    """Every alias under the store's prefix and the collection it points to."""
    listed = conn.client.list_aliases(timeout=conn.timeout).get("aliases", [])
    table: dict[str, str] = {}
    for full in listed:
        alias = conn.name_of(full)
        if alias is None:
            continue
        with contextlib.suppress(MilvusException):  # dropped meanwhile
            described = conn.client.describe_alias(full, timeout=conn.timeout)
            target = conn.name_of(str(described["collection_name"]))
            if target is not None:
                table[alias] = target
    return table


def collections(conn: MilvusConn) -> set[str]:
    """The names of the store's collections."""
    names = (conn.name_of(full) for full in conn.client.list_collections(timeout=conn.timeout))
    return {n for n in names if n is not None}


def set_alias(conn: MilvusConn, alias: str, collection: str) -> None:
    """Create `alias`, or repoint it with alter_alias (atomic in Milvus)."""
    check_alias(alias, collection, collections(conn))
    full, target = conn.full(alias), conn.full(collection)
    with conn.writes:
        if alias in read(conn):
            conn.client.alter_alias(target, full, timeout=conn.timeout)
        else:
            conn.client.create_alias(target, full, timeout=conn.timeout)


def delete_alias(conn: MilvusConn, alias: str) -> None:
    """Drop `alias`; 404 when there is none."""
    if alias not in read(conn):
        raise alias_not_found(alias)
    with conn.writes:
        conn.client.drop_alias(conn.full(alias), timeout=conn.timeout)


def drop_aliases_of(conn: MilvusConn, collection: str) -> None:
    """Drop the aliases pointing to `collection` (a Milvus server refuses to drop it before)."""
    for alias, target in read(conn).items():
        if target == collection:
            with conn.writes, contextlib.suppress(MilvusException):
                conn.client.drop_alias(conn.full(alias), timeout=conn.timeout)
