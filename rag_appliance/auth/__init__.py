"""Scoped API keys: roles, collection scopes, the request's principal and where it is checked.

See docs/security.md. `keys` (settings model, principals, constant-time lookup), `access` (the
context variable and the service-layer checks), `middleware` (the HTTP edge and throttling),
`ui` (the web UI's login).
"""

from rag_appliance.auth.access import (
    PermissionDenied,
    acting_as,
    authorize_admin,
    authorize_read,
    authorize_write,
    current_principal,
    iterate_as,
    readable,
)
from rag_appliance.auth.keys import (
    ANONYMOUS,
    FULL_ACCESS,
    ApiKeySpec,
    KeyRing,
    Principal,
    Role,
    authenticate,
    hash_key,
)
from rag_appliance.auth.ui import login, ui_auth, ui_principal

__all__ = [
    "ANONYMOUS",
    "FULL_ACCESS",
    "ApiKeySpec",
    "KeyRing",
    "PermissionDenied",
    "Principal",
    "Role",
    "acting_as",
    "authenticate",
    "authorize_admin",
    "authorize_read",
    "authorize_write",
    "current_principal",
    "hash_key",
    "iterate_as",
    "login",
    "readable",
    "ui_auth",
    "ui_principal",
]
