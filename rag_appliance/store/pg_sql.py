"""The pgvector adapter's tables: the collection registry, one table per collection, and the
text search configurations that turn text into BM25 terms.

Everything lives in one schema (`rag_appliance` by default). `rag_collections` is the registry:
each collection's name, its table, provenance, BM25 config (NULL: dense only) and the text
search configuration its writes tokenise with. A collection's table holds one row per point:

    id uuid PRIMARY KEY, embedding vector(dim) STORAGE MAIN, payload jsonb STORAGE MAIN,
    tsv tsvector, tsv_len integer GENERATED ALWAYS AS (rag_tsv_length(tsv)) STORED, seg integer

with a b-tree index on seg, a GIN index on the payload (jsonb_path_ops: the equality conditions
of every filter, doc_id/content_hash/chunk_index/committed included), a GIN index on tsv (which
chunks hold a term) and a partial index on the chunks with terms (counting them is BM25's N).
tsv is NULL where no text was tokenised (a dense-only collection, or a point an upgrade has not
reached yet) and empty for a text without terms; tsv_len is the chunk's length in terms (BM25's
document length), kept beside it so that a search does not unnest every candidate's tsvector to
count it. The embedding and the payload stay in the row (STORAGE MAIN, the payload compressed
when the row is long), and the terms go to TOAST first: with pgvector's default (EXTERNAL) a
row of a 384-d vector and a chunk's text outgrew 2 kB and moved its vector out, so that every
exact distance was a TOAST fetch (5x slower), and each filtered row read its payload from there
(2.3x slower).

HNSW indexes are partial, one per segment (pg_hnsw): `seg` is the registry's `open_seg` when the
row was written, and a segment is a sealed range of seg numbers with the index
`WHERE seg >= first AND seg <= last`; the rows after the last segment are searched exactly.
Tables made before segments (registry `open_seg` NULL) have no seg column and one HNSW index over
every row, made at creation, and keep it.

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
class Segment:
    """The rows with `first <= seg <= last`, under the partial HNSW index `index`."""

    first: int
    last: int
    index: str
    points: int  # the rows it held when its index was built


@dataclass(frozen=True)
class Meta:
    """A collection's registry row."""

    name: str
    table: str
    provenance: Provenance
    created_at: str
    bm25: Bm25Config | None  # None: dense only
    ts_config: str | None  # the regconfig its writes tokenise with (set while upgrading too)
    # The seg rows are written with; None: a table made before segments (one HNSW index).
    open_seg: int | None = None
    segments: tuple[Segment, ...] = ()  # in seg order, contiguous from 0

    @property
    def tail(self) -> int:
        """The first seg no segment covers: rows from it on are searched exactly."""
        return self.segments[-1].last + 1 if self.segments else 0


_META_COLUMNS = "name, table_name, provenance, bm25, ts_config, created_at, open_seg, segments"


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
    registry = sql.Identifier(schema, REGISTRY)
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, table_name text NOT NULL "
            "UNIQUE, provenance jsonb NOT NULL, bm25 jsonb, ts_config text, created_at text "
            "NOT NULL, open_seg integer, segments jsonb)"
        ).format(registry)
    )
    columns = cur.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attname IN ('open_seg', 'segments') AND NOT attisdropped",
        (registry.as_string(cur.connection),),
    ).fetchone()
    if columns is None or columns[0] < 2:  # a registry made before segments
        cur.execute(
            sql.SQL(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS open_seg integer, "
                "ADD COLUMN IF NOT EXISTS segments jsonb"
            ).format(registry)
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
    query = sql.SQL("SELECT {} FROM {} WHERE name = %s").format(
        sql.SQL(_META_COLUMNS), sql.Identifier(schema, REGISTRY)
    )
    if share:
        query = query + sql.SQL(" FOR SHARE")
    row = cur.execute(query, (name,)).fetchone()
    return None if row is None else _meta(row)


def list_meta(cur: Cursor, schema: str) -> list[Meta]:
    """Every registered collection, by name."""
    query = sql.SQL("SELECT {} FROM {} ORDER BY name").format(
        sql.SQL(_META_COLUMNS), sql.Identifier(schema, REGISTRY)
    )
    return [_meta(row) for row in cur.execute(query).fetchall()]


def _meta(row: tuple[Any, ...]) -> Meta:
    name, table, provenance, bm25, ts_config, created_at, open_seg, segments = row
    try:
        return Meta(
            name,
            table,
            provenance_from_dict(provenance),
            created_at,
            bm25_from_dict(bm25),
            ts_config,
            None if open_seg is None else int(open_seg),
            tuple(
                Segment(int(s["first"]), int(s["last"]), str(s["index"]), int(s["points"]))
                for s in segments or ()
            ),
        )
    except (KeyError, TypeError, ValueError):
        raise Conflict(
            f"collection {name!r} has a malformed registry entry in PostgreSQL", param="collection"
        ) from None


def insert_meta(cur: Cursor, schema: str, meta: Meta) -> None:
    """Register the collection."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (name, table_name, provenance, bm25, ts_config, created_at, "
            "open_seg, segments) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(schema, REGISTRY)),
        (
            meta.name,
            meta.table,
            Jsonb(provenance_to_dict(meta.provenance)),
            None if meta.bm25 is None else Jsonb(bm25_to_dict(meta.bm25)),
            meta.ts_config,
            meta.created_at,
            meta.open_seg,
            Jsonb(segments_json(meta.segments)),
        ),
    )


def segments_json(segments: tuple[Segment, ...]) -> list[dict[str, Any]]:
    """The registry's `segments` value."""
    return [
        {"first": s.first, "last": s.last, "index": s.index, "points": s.points} for s in segments
    ]


def set_segments(cur: Cursor, schema: str, name: str, segments: tuple[Segment, ...]) -> bool:
    """Record the collection's segments; False if it is gone."""
    cur.execute(
        sql.SQL("UPDATE {} SET segments = %s WHERE name = %s").format(
            sql.Identifier(schema, REGISTRY)
        ),
        (Jsonb(segments_json(segments)), name),
    )
    return cur.rowcount == 1


def seal(cur: Cursor, schema: str, name: str) -> int | None:
    """Start a new open segment and return the one sealed (None if the collection is gone).
    The update waits for the writes in flight, which hold the row's share lock; later writes
    read the new `open_seg`."""
    row = cur.execute(
        sql.SQL(
            "UPDATE {} SET open_seg = open_seg + 1 WHERE name = %s AND open_seg IS NOT NULL "
            "RETURNING open_seg - 1"
        ).format(sql.Identifier(schema, REGISTRY)),
        (name,),
    ).fetchone()
    return None if row is None else int(row[0])


def seg_range(first: int, last: int | None) -> sql.Composed:
    """`seg >= first [AND seg <= last]` with literal bounds: a partial index's predicate, and a
    search arm's condition, which the planner matches to the predicate (it cannot with
    parameters)."""
    if last is None:
        return sql.SQL("seg >= {}").format(sql.Literal(first))
    return sql.SQL("seg >= {} AND seg <= {}").format(sql.Literal(first), sql.Literal(last))


def segment_index_name(table: str, last: int) -> str:
    """The HNSW index of the segment ending at seg `last` (each build seals a new seg, so the
    name is new; at most 51 + 2 + 10 characters)."""
    return f"{table}_h{last}"


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
    """The collection's table and its indexes (no HNSW index: pg_hnsw builds them by
    segment)."""
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
            "tsv_len integer GENERATED ALWAYS AS ({}(tsv)) STORED, seg integer NOT NULL)"
        ).format(t, sql.Literal(dimension), sql.Identifier(schema, LENGTH_FUNCTION))
    )
    # In the row, not in TOAST (module docstring); a value too long for the page still moves.
    cur.execute(
        sql.SQL(
            "ALTER TABLE {} ALTER COLUMN embedding SET STORAGE MAIN, "
            "ALTER COLUMN payload SET STORAGE MAIN"
        ).format(t)
    )
    cur.execute(sql.SQL("CREATE INDEX {} ON {} (seg)").format(sql.Identifier(f"{table}_seg"), t))
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
