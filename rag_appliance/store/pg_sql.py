"""The pgvector adapter's tables: the collection registry, one table per collection, and the
text search configurations that turn text into BM25 terms.

Everything lives in one schema (`rag_appliance` by default). `rag_collections` is the registry:
each collection's name, its table, provenance, BM25 config (NULL: dense only) and the text
search configuration its writes tokenise with. A collection's table holds one row per point:

    id uuid PRIMARY KEY, embedding vector(dim), payload jsonb, tsv tsvector,
    tsv_len integer GENERATED ALWAYS AS (rag_tsv_length(tsv)) STORED

with an HNSW index (vector_cosine_ops), a GIN index on the payload (jsonb_path_ops: the
equality conditions of every filter, doc_id/content_hash/chunk_index/committed included), a
GIN index on tsv (which chunks hold a term) and a partial index on the chunks with terms
(counting them is BM25's N). tsv is NULL where no text was tokenised (a dense-only collection,
or a point an upgrade has not reached yet) and empty for a text without terms; tsv_len is the
chunk's length in terms (BM25's document length), kept beside it so that a search does not
unnest every candidate's tsvector to count it.

Why tsv is an ordinary column and not GENERATED: the configuration is per collection and only
known when BM25 is enabled, and `enable_sparse` fills it page by page while writes go on; a
generated column would fix one configuration at creation and need a table rewrite under an
exclusive lock to add.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from rag_appliance.errors import Conflict, InvalidRequest
from rag_appliance.store.base import Bm25Config, Provenance
from rag_appliance.store.provenance import (
    bm25_from_dict,
    bm25_to_dict,
    provenance_from_dict,
    provenance_to_dict,
)
from rag_appliance.store.validation import not_found

Cursor = psycopg.Cursor[Any]

REGISTRY = "rag_collections"
# The SQL function counting a tsvector's positions (its text's terms, repeats included).
LENGTH_FUNCTION = "rag_tsv_length"
# pgvector indexes `vector` columns of up to 2000 dimensions with HNSW; above, search is exact.
HNSW_MAX_DIMENSION = 2000
# The largest `vector` pgvector stores at all.
MAX_DIMENSION = 16000
# Compound words ("state-of-the-art") are indexed as their parts only, as the BM25 tokeniser of
# the other adapters does, so they do not count twice towards a chunk's length.
_COMPOUND_TOKENS = ("asciihword", "hword", "numhword")
_WORD_TOKENS = ("asciiword", "word", "hword_part", "hword_asciipart")
_UNSAFE = re.compile(r"[^a-z0-9_]")
# ASCII punctuation, as a PostgreSQL regular expression: !-/ :-@ [-` {-~.
_ASCII_PUNCTUATION = "[!-/:-@[-`{-~]+"


@dataclass(frozen=True)
class Meta:
    """A collection's registry row."""

    name: str
    table: str
    provenance: Provenance
    created_at: str
    bm25: Bm25Config | None  # None: dense only
    ts_config: str | None  # the regconfig its writes tokenise with (set while upgrading too)


def table_name(name: str) -> str:
    """The table of collection `name`: sanitised, cut short and made unique by a hash (names
    are case-sensitive and up to 64 characters; PostgreSQL identifiers stop at 63 bytes)."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"c_{_UNSAFE.sub('_', name.lower())[:40]}_{digest}"


def ensure_registry(cur: Cursor, schema: str) -> None:
    """Create the registry table and the length function if missing (idempotent, DDL lock
    held)."""
    cur.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}(tsvector) RETURNS integer LANGUAGE sql IMMUTABLE "
            "PARALLEL SAFE AS $$ SELECT coalesce(sum(cardinality(positions)), 0)::integer "
            "FROM unnest($1) $$"
        ).format(sql.Identifier(schema, LENGTH_FUNCTION))
    )
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, table_name text NOT NULL "
            "UNIQUE, provenance jsonb NOT NULL, bm25 jsonb, ts_config text, created_at text "
            "NOT NULL)"
        ).format(sql.Identifier(schema, REGISTRY))
    )


def lock(cur: Cursor, schema: str) -> None:
    """Serialise DDL on `schema` (collections created, deleted, upgraded) across replicas until
    the transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"rag:{schema}",))


def read_meta(cur: Cursor, schema: str, name: str, *, share: bool = False) -> Meta:
    """The collection's registry row, or CollectionNotFound. `share` locks it until the
    transaction ends, so that the collection is neither deleted nor given BM25 meanwhile."""
    meta = find_meta(cur, schema, name, share=share)
    if meta is None:
        raise not_found(name)
    return meta


def find_meta(cur: Cursor, schema: str, name: str, *, share: bool = False) -> Meta | None:
    """The collection's registry row, None if there is none (`share`: as read_meta)."""
    query = sql.SQL(
        "SELECT name, table_name, provenance, bm25, ts_config, created_at FROM {} WHERE name = %s"
    ).format(sql.Identifier(schema, REGISTRY))
    if share:
        query = query + sql.SQL(" FOR SHARE")
    row = cur.execute(query, (name,)).fetchone()
    return None if row is None else _meta(row)


def list_meta(cur: Cursor, schema: str) -> list[Meta]:
    """Every registered collection, by name."""
    query = sql.SQL(
        "SELECT name, table_name, provenance, bm25, ts_config, created_at FROM {} ORDER BY name"
    ).format(sql.Identifier(schema, REGISTRY))
    return [_meta(row) for row in cur.execute(query).fetchall()]


def _meta(row: tuple[Any, ...]) -> Meta:
    name, table, provenance, bm25, ts_config, created_at = row
    try:
        return Meta(
            name,
            table,
            provenance_from_dict(provenance),
            created_at,
            bm25_from_dict(bm25),
            ts_config,
        )
    except (KeyError, TypeError, ValueError):
        raise Conflict(
            f"collection {name!r} has a malformed registry entry in PostgreSQL", param="collection"
        ) from None


def insert_meta(cur: Cursor, schema: str, meta: Meta) -> None:
    """Register the collection."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (name, table_name, provenance, bm25, ts_config, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(schema, REGISTRY)),
        (
            meta.name,
            meta.table,
            Jsonb(provenance_to_dict(meta.provenance)),
            None if meta.bm25 is None else Jsonb(bm25_to_dict(meta.bm25)),
            meta.ts_config,
            meta.created_at,
        ),
    )


def set_sparse(
    cur: Cursor, schema: str, name: str, bm25: Bm25Config | None, ts_config: str | None
) -> None:
    """Record the collection's BM25 config and tokenising configuration."""
    cur.execute(
        sql.SQL("UPDATE {} SET bm25 = %s, ts_config = %s WHERE name = %s").format(
            sql.Identifier(schema, REGISTRY)
        ),
        (None if bm25 is None else Jsonb(bm25_to_dict(bm25)), ts_config, name),
    )


def create_table(cur: Cursor, schema: str, table: str, dimension: int) -> None:
    """The collection's table and its indexes."""
    if dimension > MAX_DIMENSION:
        raise InvalidRequest(
            f"the pgvector backend stores vectors of up to {MAX_DIMENSION} dimensions, "
            f"not {dimension}",
            param="dimension",
        )
    t = sql.Identifier(schema, table)
    cur.execute(
        sql.SQL(
            "CREATE TABLE {} (id uuid PRIMARY KEY, embedding vector({}) NOT NULL, "
            "payload jsonb NOT NULL, tsv tsvector, "
            "tsv_len integer GENERATED ALWAYS AS ({}(tsv)) STORED)"
        ).format(t, sql.Literal(dimension), sql.Identifier(schema, LENGTH_FUNCTION))
    )
    if dimension <= HNSW_MAX_DIMENSION:
        cur.execute(
            sql.SQL("CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops)").format(
                sql.Identifier(f"{table}_hnsw"), t
            )
        )
    cur.execute(
        sql.SQL("CREATE INDEX {} ON {} USING gin (payload jsonb_path_ops)").format(
            sql.Identifier(f"{table}_payload"), t
        )
    )
    cur.execute(
        sql.SQL("CREATE INDEX {} ON {} USING gin (tsv)").format(sql.Identifier(f"{table}_tsv"), t)
    )
    cur.execute(
        sql.SQL("CREATE INDEX {} ON {} (id) WHERE tsv_len > 0").format(
            sql.Identifier(f"{table}_terms"), t
        )
    )


def tokenise(config: sql.Composable, text: sql.Composable) -> sql.Composed:
    """The tsvector of `text` under the regconfig `config` (both SQL expressions). ASCII
    punctuation becomes spaces first, so that identifiers, hosts and paths ("os.path.join")
    count as their words, as the other adapters' tokeniser splits them, rather than as one
    token of PostgreSQL's parser (spelt as ranges: no locale-dependent character class)."""
    return sql.SQL("to_tsvector({}, regexp_replace({}, {}, ' ', 'g'))").format(
        config, text, sql.Literal(_ASCII_PUNCTUATION)
    )


def drop_table(cur: Cursor, schema: str, table: str) -> None:
    """Drop a collection's table (with its indexes)."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table)))


def ts_config(cur: Cursor, schema: str, config: Bm25Config) -> str:
    """The text search configuration for `config` in `schema` (created on first use; DDL lock
    held), as a regconfig literal: the Snowball stemmer and stopword list of its language,
    compound words as their parts."""
    stem, stop = _dictionaries(cur, config)
    name = f"bm25_{config.language}_{'stem' if stem else 'nostem'}_{'stop' if stop else 'nostop'}"
    qualified = sql.Identifier(schema, name)
    exists = cur.execute(
        "SELECT 1 FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace "
        "WHERE n.nspname = %s AND c.cfgname = %s",
        (schema, name),
    ).fetchone()
    if exists is None:
        if stem and stop:
            dictionary = sql.Identifier("pg_catalog", f"{config.language}_stem")
        elif stem:  # the language's stemmer without its stopwords
            dictionary = sql.Identifier(schema, f"{name}_dict")
            cur.execute(
                sql.SQL(
                    "CREATE TEXT SEARCH DICTIONARY {} (TEMPLATE = snowball, LANGUAGE = {})"
                ).format(dictionary, sql.Literal(config.language))
            )
        elif stop:  # lowercased words without the language's stopwords
            dictionary = sql.Identifier(schema, f"{name}_dict")
            cur.execute(
                sql.SQL(
                    "CREATE TEXT SEARCH DICTIONARY {} (TEMPLATE = simple, STOPWORDS = {})"
                ).format(dictionary, sql.Literal(config.language))
            )
        else:
            dictionary = sql.Identifier("pg_catalog", "simple")
        cur.execute(
            sql.SQL("CREATE TEXT SEARCH CONFIGURATION {} (COPY = pg_catalog.simple)").format(
                qualified
            )
        )
        cur.execute(
            sql.SQL("ALTER TEXT SEARCH CONFIGURATION {} ALTER MAPPING FOR {} WITH {}").format(
                qualified, sql.SQL(", ").join(map(sql.SQL, _WORD_TOKENS)), dictionary
            )
        )
        cur.execute(
            sql.SQL("ALTER TEXT SEARCH CONFIGURATION {} DROP MAPPING FOR {}").format(
                qualified, sql.SQL(", ").join(map(sql.SQL, _COMPOUND_TOKENS))
            )
        )
    return qualified.as_string(cur.connection)


def _dictionaries(cur: Cursor, config: Bm25Config) -> tuple[bool, bool]:
    """Whether `config` stems and drops stopwords here, or InvalidRequest for a language
    PostgreSQL has no Snowball stemmer for. Languages without a PostgreSQL stopword list keep
    their stopwords (see docs/stores.md)."""
    row = cur.execute(
        "SELECT dictinitoption FROM pg_ts_dict d JOIN pg_namespace n ON n.oid = d.dictnamespace "
        "WHERE n.nspname = 'pg_catalog' AND d.dictname = %s",
        (f"{config.language}_stem",),
    ).fetchone()
    if row is None:
        raise InvalidRequest(
            f"the pgvector backend has no PostgreSQL text search dictionary for BM25 language "
            f"{config.language!r}",
            param="bm25",
        )
    has_stopwords = "stopwords" in (row[0] or "")
    return config.stemming, config.stopwords and has_stopwords
