"""Keys shared by the auth tests: an admin, team-a read-write and read-only, a hashed key."""

from __future__ import annotations

from typing import Any

from rag_appliance.auth.keys import hash_key

ADMIN = "admin-secret"
RW_A = "rw-team-a-secret"
RO_A = "ro-team-a-secret"
HASHED = "hashed-secret"
KEYS: list[Any] = [
    ADMIN,
    {"key": RW_A, "role": "read-write", "collections": ["team-a-*"], "name": "alice"},
    {"key": RO_A, "role": "read-only", "collections": ["team-a-*"], "name": "reader"},
    {"key": hash_key(HASHED), "role": "read-only", "collections": ["team-a-docs"]},
]


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of a key."""
    return {"Authorization": f"Bearer {key}"}
