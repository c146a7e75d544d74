"""Which adapter serves each `store.backend`: the one place where a store backend is chosen.

Each adapter module has a `from_settings(settings) -> VectorStore`; it is imported only when its
backend is configured, so an unused backend's library is never loaded. A new adapter is a new
module with that function plus one line in BACKENDS (and its name in StoreSettings.backend).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from rag_appliance.store.base import VectorStore

if TYPE_CHECKING:
    from rag_appliance.settings import Settings

# backend name -> the module holding its adapter and from_settings
BACKENDS: dict[str, str] = {
    "qdrant_edge": "rag_appliance.store.qdrant_edge",
    "qdrant_server": "rag_appliance.store.qdrant_server",
    "pgvector": "rag_appliance.store.pgvector",
    "milvus": "rag_appliance.store.milvus",
}


def build_store(settings: Settings) -> VectorStore:
    """The configured vector store (imports its backend lazily)."""
    backend = settings.store.backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown store backend {backend!r}: known are {sorted(BACKENDS)}")
    factory: Callable[[Settings], VectorStore] = importlib.import_module(
        BACKENDS[backend]
    ).from_settings
    return factory(settings)
