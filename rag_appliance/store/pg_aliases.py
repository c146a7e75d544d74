"""The pgvector store's aliases: a table beside the collection registry, changed in one
transaction.

`rag_aliases(alias, collection)` references the registry's name with ON DELETE CASCADE, so
deleting a collection drops its aliases in the same transaction; repointing an alias is one
upsert, which every reader sees whole or not at all.
"""

from __future__ import annotations

from psycopg import sql

from rag_appliance.store.aliases import alias_not_found, check_alias
from rag_appliance.store.pg_sql import REGISTRY, Cursor, list_meta

ALIASES = "rag_aliases"


def ensure_table(cur: Cursor, schema: str) -> None:
    """Create the alias table if missing (idempotent, the schema's DDL lock held)."""
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (alias text PRIMARY KEY, collection text NOT NULL "
            "REFERENCES {} (name) ON DELETE CASCADE)"
        ).format(sql.Identifier(schema, ALIASES), sql.Identifier(schema, REGISTRY))
    )


def read(cur: Cursor, schema: str) -> dict[str, str]:
    """Every alias and its collection."""
    rows = cur.execute(
        sql.SQL("SELECT alias, collection FROM {} ORDER BY alias").format(
            sql.Identifier(schema, ALIASES)
        )
    ).fetchall()
    return {str(a): str(c) for a, c in rows}


def set_alias(cur: Cursor, schema: str, alias: str, collection: str) -> None:
    """Create or repoint `alias` (the schema's DDL lock held: no collection appears meanwhile)."""
    check_alias(alias, collection, {m.name for m in list_meta(cur, schema)})
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (alias, collection) VALUES (%s, %s) "
            "ON CONFLICT (alias) DO UPDATE SET collection = EXCLUDED.collection"
        ).format(sql.Identifier(schema, ALIASES)),
        (alias, collection),
    )


def delete_alias(cur: Cursor, schema: str, alias: str) -> None:
    """Drop `alias`; 404 when there is none."""
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE alias = %s").format(sql.Identifier(schema, ALIASES)),
        (alias,),
    )
    if cur.rowcount == 0:
        raise alias_not_found(alias)
