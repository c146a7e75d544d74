"""What every adapter's aliases share: the version naming, the checks and their errors.

A collection a user names may be an alias for a physical collection, its current version:
`kb` -> `kb__v2`. Re-indexing writes the next version beside it and repoints the alias in one
step, so searches see either version whole, never a mix. Versions are `<alias>__v<n>`.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from rag_appliance.errors import CollectionNotFound, Conflict
from rag_appliance.store.validation import check_collection_name, not_found

VERSION_SEP = "__v"
_VERSION = re.compile(r"(?P<base>.+)__v(?P<n>[0-9]+)", re.ASCII)


def version_name(base: str, n: int) -> str:
    """The physical name of version `n` of `base` (checked like any collection name)."""
    return check_collection_name(f"{base}{VERSION_SEP}{n}")


def version_of(name: str) -> tuple[str, int] | None:
    """(base, n) for a version's physical name, None for any other name."""
    m = _VERSION.fullmatch(name)
    return None if m is None else (m["base"], int(m["n"]))


def alias_not_found(alias: str) -> CollectionNotFound:
    """The 404 for an alias that does not exist."""
    return CollectionNotFound(f"alias {alias!r} does not exist", param="collection")


def check_alias(alias: str, collection: str, collections: Collection[str]) -> None:
    """Refuse an alias that is not a valid name, is a collection's name, or points nowhere."""
    check_collection_name(alias)
    check_collection_name(collection)
    if alias in collections:
        raise Conflict(
            f"{alias!r} is a collection, so it cannot also be an alias; delete or re-index it",
            param="collection",
        )
    if collection not in collections:
        raise not_found(collection)


def check_not_alias(name: str, aliases: Collection[str]) -> None:
    """Refuse to create a collection under an alias's name (the backends refuse it too)."""
    if name in aliases:
        raise Conflict(
            f"{name!r} is an alias; a collection cannot take its name", param="collection"
        )
