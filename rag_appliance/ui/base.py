"""What every UI handler class shares: the services getter, the session's key, error display."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from rag_appliance.auth import ANONYMOUS, PermissionDenied, Principal, acting_as, ui_principal
from rag_appliance.errors import AppError, ServiceUnavailable
from rag_appliance.services import Services
from rag_appliance.ui.render import Refusal

log = logging.getLogger(__name__)

ServicesGetter = Callable[[], "Services | None"]
_GENERIC_ERROR = "Something went wrong; the details are in the server log."
NO_SESSION = "This session has no API key's access: sign in again (reload the page)."


def report(exc: BaseException, action: str) -> str:
    """A readable message for an error, shown as a toast; never a stack trace. A 403 comes
    back as a Refusal: the panels show it as what the key may not do, not as an error."""
    if isinstance(exc, PermissionDenied):
        message: str = Refusal(exc.message)
    elif isinstance(exc, AppError):
        message = exc.message
    else:  # ours or a library's bug: the user gets no internals, the log gets everything
        log.error("web UI: %s failed", action, exc_info=exc)
        message = _GENERIC_ERROR
    gr.Warning(message)
    return message


def hidden() -> dict[str, Any]:
    """An update that hides a confirmation row."""
    return gr.update(visible=False)


def username_of(request: gr.Request | None) -> str | None:
    """The signed-in user name (None when the UI is open, or for a call without a request)."""
    return getattr(request, "username", None)


class Handlers:
    """Handlers bound to a services getter (services may only exist once the app started)."""

    def __init__(self, services: ServicesGetter) -> None:
        self._get = services

    def services(self) -> Services:
        """The running services, or a 503 while the app is still starting."""
        services = self._get()
        if services is None or not services.running:
            raise ServiceUnavailable("the server is still starting; try again in a moment")
        return services

    def principal(self, request: gr.Request | None) -> Principal:
        """Who the event acts as: the signed-in key (full access without keys); 403 for a
        session no key signed in (fails closed), 503 while the app is starting."""
        principal = ui_principal(self.services().settings, username_of(request))
        if principal is ANONYMOUS:
            raise PermissionDenied(NO_SESSION)
        return principal

    @contextmanager
    def acting(self, request: gr.Request | None) -> Iterator[Principal]:
        """Run the block as the session's key, so the services check what it may do."""
        with acting_as(self.principal(request)) as principal:
            yield principal

    async def collection_names(self) -> list[str]:
        """Names of the collections the acting key may read, sorted."""
        collections = self.services().require_collections()
        return sorted(info.name for info, _ in await collections.all())
