"""The request's principal (a context variable) and the checks the services make against it.

The HTTP edge sets the principal for every request it authenticates, the web UI around each of
its events (`acting_as`). Code that runs with none set is a trusted in-process caller (the CLI,
the evaluation harness, tests) and may do anything: the checks below pass.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rag_appliance.auth.keys import Principal
from rag_appliance.errors import AppError

T = TypeVar("T")

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "rag_principal", default=None
)


class PermissionDenied(AppError):
    """403: the key is valid but may not do this (the OpenAI shape, code permission_denied)."""

    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


def current_principal() -> Principal | None:
    """Who the running request acts as; None for trusted in-process callers."""
    return _principal.get()


def set_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Act as `principal` from here on in this context; reset with the returned token."""
    return _principal.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    """Undo a `set_principal`."""
    _principal.reset(token)


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Run the block as `principal` (the UI's handlers: one `with` around the service calls)."""
    token = _principal.set(principal)
    try:
        yield principal
    finally:
        _principal.reset(token)


async def iterate_as(principal: Principal, items: AsyncIterator[T]) -> AsyncIterator[T]:
    """Iterate a stream as `principal`, step by step.

    A generator's steps may run in different tasks (Gradio's streaming handlers), so a `with`
    around the whole loop does not hold; each step is run inside its own `acting_as`.
    """
    try:
        while True:
            with acting_as(principal):
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    return
            yield item
    finally:  # closing the wrapper (Stop, a closed page) closes the stream: no orphaned work
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            with acting_as(principal):
                await aclose()


def authorize_read(collection: str) -> None:
    """403 unless the principal may read the collection (the same answer whether it exists)."""
    principal = _principal.get()
    if principal is not None and not principal.can_read(collection):
        raise _no_access(principal, collection)


def authorize_write(collection: str) -> None:
    """403 unless the principal may write to the collection."""
    principal = _principal.get()
    if principal is None or principal.can_write(collection):
        return
    if not principal.can_read(collection):
        raise _no_access(principal, collection)
    raise PermissionDenied(
        f"This API key is read-only: it may not change collection '{collection}' "
        "(index, upload, delete or upgrade need a read-write key).",
        param="collection",
    )


def authorize_admin(what: str) -> None:
    """403 unless the principal is an admin."""
    principal = _principal.get()
    if principal is not None and not principal.is_admin:
        raise PermissionDenied(f"{what} needs an admin API key.")


def readable(names: Iterable[str]) -> list[str]:
    """The names among `names` the principal may read, in order."""
    principal = _principal.get()
    return [n for n in names if principal is None or principal.can_read(n)]


def _no_access(principal: Principal, collection: str) -> PermissionDenied:
    # Out of scope is refused before the store is asked: a missing and an existing collection
    # get the same answer, so a key cannot probe which names exist outside its scopes.
    return PermissionDenied(
        f"This API key has no access to collection '{collection}' "
        f"(it may use: {principal.scopes()}).",
        param="collection",
    )
