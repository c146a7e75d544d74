"""The embedded store's aliases: `aliases.json` in the store directory, replaced atomically.

qdrant-edge has no alias API. The whole alias table is one small file, rewritten with
edge_layout.write_json (temp file, fsync, os.replace), so a switch is one rename: a crash leaves
the old table or the new one. It is read when the store opens; an alias whose collection is gone
(a crash between a collection's deletion and the table's rewrite) is dropped then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from rag_appliance.store.aliases import alias_not_found, check_alias
from rag_appliance.store.edge_layout import write_json

log = logging.getLogger(__name__)

ALIASES = "aliases.json"
FORMAT = 1


def load(root: Path, collections: Collection[str]) -> dict[str, str]:
    """The alias table under `root` (empty when there is none)."""
    path = root / ALIASES
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text("utf-8"))
    table = raw.get("aliases") if isinstance(raw, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: not an alias table")
    kept = {str(a): str(c) for a, c in table.items() if c in collections}
    if len(kept) != len(table):
        log.warning("%s: dropped aliases of deleted collections", path)
    return kept


def save(root: Path, aliases: Mapping[str, str]) -> None:
    """Write the whole table durably and atomically."""
    write_json(root / ALIASES, {"format": FORMAT, "aliases": dict(sorted(aliases.items()))})


def with_alias(
    root: Path, aliases: Mapping[str, str], alias: str, collection: str, names: Collection[str]
) -> dict[str, str]:
    """The table with `alias` -> `collection`, saved (the caller holds the store lock)."""
    check_alias(alias, collection, names)
    table = {**aliases, alias: collection}
    save(root, table)
    return table


def without(
    root: Path, aliases: Mapping[str, str], drop: Callable[[str, str], bool]
) -> dict[str, str]:
    """The table without the aliases `drop(alias, collection)` picks, saved when it changed."""
    table = {a: c for a, c in aliases.items() if not drop(a, c)}
    if len(table) != len(aliases):
        save(root, table)
    return table


def without_alias(root: Path, aliases: Mapping[str, str], alias: str) -> dict[str, str]:
    """The table without `alias`, saved; 404 when there is no such alias."""
    if alias not in aliases:
        raise alias_not_found(alias)
    return without(root, aliases, lambda a, _: a == alias)
