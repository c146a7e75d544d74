"""A request's stream of deltas that releases its admission slot however it ends."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from rag_appliance.generation.base import Delta


class DeltaStream:
    """One request's deltas; holds its admission slot until it ends, is closed or dropped."""

    def __init__(self, inner: AsyncGenerator[Delta, None], release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> DeltaStream:
        return self

    async def __anext__(self) -> Delta:
        try:
            return await self._inner.__anext__()
        except BaseException:  # the end, an error or a cancellation: the slot is free again
            self._done()
            raise

    async def aclose(self) -> None:
        """Stop the request (the engine aborts it) and free the slot."""
        try:
            await self._inner.aclose()
        finally:
            self._done()

    def _done(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __del__(self) -> None:
        # A consumer that drops the stream without closing it must not leak the slot; the
        # inner generator is then closed by the event loop's async-generator finalizer.
        self._done()
