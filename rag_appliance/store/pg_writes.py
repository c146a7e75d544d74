"""How points reach a collection's table, and enable_sparse's pass over an existing one.

Every write runs in one transaction that first takes a share lock on the collection's registry
row (pg_sql.read_meta): the collection cannot be deleted or given BM25 under a write, and a
write that waited reads the new registry row. The tokenising configuration is the registry's
`ts_config`, applied by PostgreSQL in the INSERT itself (pg_sql.tokenise), so every replica
writes the same terms.

enable_sparse (`upgrade`) is three steps, each its own transaction:

1. record the configuration in `ts_config` (the collection still reports no BM25): from then
   on every write tokenises its text; the update waits for the writes in flight, which hold the
   row's share lock, so none of them is missed;
2. tokenise the payload "text" of the points without terms yet (tsv NULL), a page per
   transaction in id order, `progress` called after each: searches and writes go on;
3. record the BM25 config: the commit point, after which sparse and hybrid searches run.

A crash leaves the collection dense-only with some points tokenised; running it again finishes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from psycopg import sql

from rag_appliance.errors import InvalidRequest
from rag_appliance.store.base import Bm25Config, Point
from rag_appliance.store.pg_sql import Cursor, Meta, read_meta, set_sparse, tokenise, ts_config
from rag_appliance.store.validation import check_payload, matrix, point_id

# Points tokenised per transaction by enable_sparse.
PAGE = 256
# A write transaction on collection `name`: its cursor and registry row (share-locked).
WriteTransaction = Callable[[str], AbstractContextManager[tuple[Cursor, Meta]]]
# A DDL transaction: its cursor, the schema's DDL lock held.
DdlTransaction = Callable[[], AbstractContextManager[Cursor]]


def upsert(cur: Cursor, schema: str, meta: Meta, points: Sequence[Point]) -> None:
    """Insert or replace `points` by id (all checked first: all or nothing)."""
    if not points:
        return
    vectors = matrix(points, meta.provenance.dimension, meta.name)
    rows = [_row(p) for p in points]
    # The last point of an id wins, as in the other adapters (ON CONFLICT refuses an id twice);
    # rows go in id order so that concurrent writes lock them in one order (no deadlock).
    last = {row[0]: i for i, row in enumerate(rows)}
    order = sorted(last.values(), key=lambda i: rows[i][0])
    tsv = (
        tokenise(
            sql.SQL("{}::regconfig").format(sql.Literal(meta.ts_config)),
            sql.SQL("coalesce(u.text, '')"),
        )
        if meta.ts_config is not None
        else sql.SQL("NULL::tsvector")
    )
    # A new row, or a rewritten one, goes to the open segment, which no HNSW index takes.
    segments = meta.open_seg is not None  # False: a table made before segments
    # The vectors go in binary (%b): their text form cost more than the rest of the write.
    cur.execute(
        sql.SQL(
            "INSERT INTO {table} (id, embedding, payload, tsv{seg}) "
            "SELECT u.id, u.embedding, u.payload, {tsv}{value} "
            "FROM unnest(%s::uuid[], %b::vector[], %s::jsonb[], %s::text[]) "
            "AS u(id, embedding, payload, text) "
            "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, "
            "payload = EXCLUDED.payload, tsv = EXCLUDED.tsv{update}"
        ).format(
            table=sql.Identifier(schema, meta.table),
            seg=sql.SQL(", seg" if segments else ""),
            tsv=tsv,
            value=sql.SQL(", {}").format(sql.Literal(meta.open_seg)) if segments else sql.SQL(""),
            update=sql.SQL(", seg = EXCLUDED.seg" if segments else ""),
        ),
        (
            [rows[i][0] for i in order],
            [vectors[i] for i in order],
            [rows[i][1] for i in order],
            [rows[i][2] for i in order],
        ),
    )


def moved(meta: Meta) -> sql.Composable:
    """`, seg = <open>` for an UPDATE: a row rewritten joins the open segment, so no segment's
    HNSW index takes the new version (nothing for a table made before segments)."""
    if meta.open_seg is None:
        return sql.SQL("")
    return sql.SQL(", seg = {}").format(sql.Literal(meta.open_seg))


def _row(point: Point) -> tuple[str, str, str | None]:
    """(canonical id, payload JSON, text) of one point, checked."""
    text = point.text_for_sparse
    if text is not None and not isinstance(text, str):
        raise InvalidRequest("a point's text_for_sparse must be a string", param="text_for_sparse")
    payload = payload_json(point.payload)
    # PostgreSQL text cannot hold NUL; to a tokeniser it separates words like a space.
    return point_id(point.id), payload, None if text is None else text.replace("\x00", " ")


def payload_json(payload: object) -> str:
    """The payload as JSON for a jsonb parameter, checked (InvalidRequest)."""
    text = json.dumps(check_payload(payload))
    if "\\u0000" in text:
        # jsonb has no NUL character (the Qdrant adapters store one).
        raise InvalidRequest(
            "the pgvector backend cannot store NUL characters (\\u0000) in payloads",
            param="payload",
        )
    return text


def upgrade(
    write: WriteTransaction,
    ddl: DdlTransaction,
    schema: str,
    name: str,
    bm25: Bm25Config,
    progress: Callable[[int], None] | None,
) -> None:
    """Give the dense-only collection `name` BM25 terms from its payload "text" (module
    docstring); no-op when it has BM25."""
    with ddl() as cur:
        meta = read_meta(cur, schema, name)
        if meta.bm25 is not None:
            return
        config = ts_config(cur, schema, bm25)
        if meta.ts_config not in (None, config):
            # An interrupted upgrade with another config: its terms are not these.
            cur.execute(
                sql.SQL("UPDATE {} SET tsv = NULL WHERE tsv IS NOT NULL").format(
                    sql.Identifier(schema, meta.table)
                )
            )
        set_sparse(cur, schema, name, None, config)
    last: object = None  # the id the previous page ended at: pages walk the primary key
    while True:
        with write(name) as (cur, meta):
            if meta.bm25 is not None or meta.ts_config is None:
                return  # another replica's upgrade finished (or started over) meanwhile
            table = sql.Identifier(schema, meta.table)
            text = sql.SQL(
                "CASE WHEN jsonb_typeof(payload -> 'text') = 'string' THEN payload ->> 'text' "
                "ELSE '' END"
            )
            # Rows behind the cursor stay tokenised: every write since step 1 tokenises.
            done = cur.execute(
                sql.SQL(
                    "UPDATE {t} SET tsv = {tsv}{seg} WHERE id IN (SELECT id FROM {t} "
                    "WHERE tsv IS NULL AND (%(last)s::uuid IS NULL OR id > %(last)s::uuid) "
                    "ORDER BY id LIMIT %(page)s) RETURNING id"
                ).format(
                    t=table,
                    tsv=tokenise(
                        sql.SQL("{}::regconfig").format(sql.Literal(meta.ts_config)), text
                    ),
                    seg=moved(meta),
                ),
                {"last": last, "page": PAGE},
            ).fetchall()
        if not done:
            break
        last = max(row[0] for row in done)
        if progress is not None:
            progress(len(done))
    with ddl() as cur:
        current = read_meta(cur, schema, name)
        if current.bm25 is None and current.ts_config == config:
            set_sparse(cur, schema, name, bm25, config)
