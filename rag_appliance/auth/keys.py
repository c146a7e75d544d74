"""API keys: the settings model, principals (role + collection scopes) and constant-time lookup."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["admin", "read-write", "read-only"]
HASH_PREFIX = "sha256:"
ALL = "*"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def hash_key(key: str) -> str:
    """The `sha256:<hex>` form of a key, for settings that should not hold the key itself."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def check_key(value: str) -> str:
    """A configured key: non-empty, and a well-formed digest when it is given as `sha256:`."""
    if not value:
        raise ValueError("an API key must not be empty")
    if value.startswith(HASH_PREFIX):
        digest = value.removeprefix(HASH_PREFIX).lower()
        if not _HEX64.fullmatch(digest):
            raise ValueError("a hashed API key is 'sha256:' and 64 hex digits")
        return HASH_PREFIX + digest
    return value


def check_pattern(pattern: str) -> str:
    """A collection scope: an exact name, `prefix*`, or `*` for every collection."""
    if not pattern or ALL in pattern[:-1]:
        raise ValueError(
            f"invalid collection scope {pattern!r}: use a name, 'prefix*' or '*' "
            "(a '*' only at the end)"
        )
    return pattern


class ApiKeySpec(BaseModel):
    """One configured key: `{"key": ..., "role": ..., "collections": [...], "name": ...}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(
        repr=False,  # settings may be printed; the key must not be
        description="The key itself, or its digest as 'sha256:<64 hex>' (see auth.hash_key).",
    )
    role: Role = Field(
        "read-only",
        description="'admin': everything, ops endpoints included; 'read-write': read, index, "
        "upload and delete in its collections; 'read-only': embeddings, search, chat and "
        "reading its collections.",
    )
    collections: list[str] = Field(
        default_factory=lambda: [ALL],
        description="Collections the key reaches: exact names or 'prefix*' ('*': all).",
    )
    name: str | None = Field(
        None,
        min_length=1,
        description="Who holds the key: the user name that goes with it at the web UI's login "
        "(unnamed keys: any user name that is not another key's name).",
    )

    @field_validator("key")
    @classmethod
    def _check_key(cls, key: str) -> str:
        return check_key(key)

    @field_validator("collections")
    @classmethod
    def _check_collections(cls, patterns: list[str]) -> list[str]:
        return [check_pattern(p) for p in patterns]

    @model_validator(mode="after")
    def _check_admin(self) -> ApiKeySpec:
        if self.role == "admin" and self.collections != [ALL]:
            raise ValueError(
                "an admin key reaches every collection; give a scoped key role 'read-write'"
            )
        return self


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a role and the collection scopes it may touch."""

    name: str | None  # the key's `name` (None: unnamed)
    role: Role
    collections: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        """Admin keys reach every collection and the operations endpoints."""
        return self.role == "admin"

    def in_scope(self, collection: str) -> bool:
        """Whether the collection matches one of the key's scopes."""
        return self.is_admin or any(_matches(p, collection) for p in self.collections)

    def can_read(self, collection: str) -> bool:
        """List, get, search and chat over the collection."""
        return self.in_scope(collection)

    def can_write(self, collection: str) -> bool:
        """Create, index into, upload to, upgrade and delete from the collection."""
        return self.role != "read-only" and self.in_scope(collection)

    def scopes(self) -> str:
        """The scopes as a short phrase for error messages (the key's holder knows them)."""
        return ", ".join(self.collections) if self.collections else "no collections"


FULL_ACCESS = Principal(None, "admin", (ALL,))  # a plain-string key, or no keys at all
# No collections: a request without a key on an open path, or an unknown UI user.
ANONYMOUS = Principal("anonymous", "read-only", ())


def _matches(pattern: str, collection: str) -> bool:
    if pattern.endswith(ALL):
        return collection.startswith(pattern[:-1])
    return pattern == collection


def principal_of(spec: str | ApiKeySpec) -> Principal:
    """The principal a configured key grants (plain strings: full access, as before scopes)."""
    if isinstance(spec, str):
        return FULL_ACCESS
    return Principal(spec.name, spec.role, tuple(spec.collections))


def _digest(key: str) -> bytes:
    if key.startswith(HASH_PREFIX):
        return bytes.fromhex(key.removeprefix(HASH_PREFIX))
    return hashlib.sha256(key.encode()).digest()


def as_spec(entry: str | ApiKeySpec | Mapping[str, Any]) -> str | ApiKeySpec:
    """A settings entry validated (tests may copy raw dicts into settings unvalidated)."""
    if isinstance(entry, str):
        return check_key(entry)
    if isinstance(entry, ApiKeySpec):
        return entry
    return ApiKeySpec.model_validate(entry)


def key_text(spec: str | ApiKeySpec) -> str:
    """The configured key (or its digest) of an entry."""
    return spec if isinstance(spec, str) else spec.key


@dataclass(frozen=True)
class _Entry:
    digest: bytes  # sha256 of the key: plain and hashed keys are compared the same way
    principal: Principal


class KeyRing:
    """The configured keys, compared in constant time; empty means authentication is off."""

    def __init__(self, entries: Iterable[str | ApiKeySpec | Mapping[str, Any]] = ()) -> None:
        specs = [as_spec(e) for e in entries]
        self._entries = tuple(_Entry(_digest(key_text(s)), principal_of(s)) for s in specs)
        self.principals = tuple(e.principal for e in self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    @property
    def names(self) -> frozenset[str]:
        """The names given to keys."""
        return frozenset(p.name for p in self.principals if p.name is not None)

    def for_name(self, name: str | None) -> Principal | None:
        """The one grant of the keys named `name` (None: of the unnamed keys); None when there
        are none, or when they grant different access (a name must say who is acting)."""
        grants = {p for p in self.principals if p.name == name}
        return next(iter(grants)) if len(grants) == 1 else None

    def authenticate(self, token: str | bytes) -> Principal | None:
        """The principal of the key `token` is, or None; every key is compared, every time."""
        given = hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()
        found: Principal | None = None
        for entry in self._entries:
            # No early exit and equal-length digests: the time taken says nothing about which
            # key matched or how close a guess was.
            if hmac.compare_digest(given, entry.digest) and found is None:
                found = entry.principal
        return found


def authenticate(
    keys: Sequence[str | ApiKeySpec | Mapping[str, Any]], token: str | bytes
) -> Principal | None:
    """The principal for `token` among `keys` (server.api_keys), or None when none matches."""
    return KeyRing(keys).authenticate(token)
