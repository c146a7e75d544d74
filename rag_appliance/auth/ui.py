"""The web UI's side of the keys: its login maps a user name and a key to a principal.

Gradio keeps only the user name of a signed-in session, so the name must say which key's access
the session has: a key with a `name` signs in with that name only; an unnamed key with any
other name, provided the unnamed keys all grant the same access (plain-string keys do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from rag_appliance.auth.keys import ANONYMOUS, FULL_ACCESS, KeyRing, Principal

if TYPE_CHECKING:
    from rag_appliance.settings import Settings

log = logging.getLogger(__name__)


def login(settings: Settings, username: str, password: str) -> Principal | None:
    """The principal a UI login gets (the password is the key), or None to refuse it."""
    return _login(KeyRing(settings.server.api_keys), username, password)


def ui_auth(settings: Settings) -> Callable[[str, str], bool] | None:
    """Gradio's `auth=` check for mount_gradio_app; None when no keys are configured (open)."""
    ring = KeyRing(settings.server.api_keys)
    if not ring:
        return None

    def check(username: str, password: str) -> bool:
        return _login(ring, username, password) is not None

    return check


def ui_principal(settings: Settings, username: str | None) -> Principal:
    """Who a UI event acts as, from the session's user name (`gr.Request.username`).

    No keys configured: full access (the UI is open). A name no login could have given:
    ANONYMOUS (no collections), so an unexpected session fails closed.
    """
    ring = KeyRing(settings.server.api_keys)
    if not ring:
        return FULL_ACCESS
    if username is None:
        return ANONYMOUS
    name = username.strip()
    grant = ring.for_name(name if name in ring.names else None)
    return grant or ANONYMOUS


def _login(ring: KeyRing, username: str, password: str) -> Principal | None:
    if not ring:
        return FULL_ACCESS
    principal = ring.authenticate(password)
    if principal is None:
        return None
    name = username.strip()  # Gradio strips it too before it stores the session's name
    if principal.name is not None:
        ok = name == principal.name and ring.for_name(name) == principal
    else:
        # Another key's name would make the session act as that key; several different
        # unnamed grants could not be told apart by the session's name.
        ok = name not in ring.names and ring.for_name(None) == principal
        if not ok and name not in ring.names:
            log.warning(
                "UI login refused: unnamed API keys grant different access; give each scoped "
                "key a `name` (its UI user name)"
            )
    return principal if ok else None
