"""Backend choice: each `store.backend` builds its adapter, imported only when chosen."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_args

import pytest

from rag_appliance.settings import Settings, StoreSettings, load_settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.store.qdrant_server import QdrantServerStore
from rag_appliance.store.registry import BACKENDS, build_store

ROOT = Path(__file__).resolve().parents[3]


def settings_for(tmp_path: Path, **store: object) -> Settings:
    base = load_settings()
    return base.model_copy(
        update={"data_dir": tmp_path, "store": base.store.model_copy(update=store)}
    )


def test_every_configurable_backend_has_an_adapter() -> None:
    assert set(get_args(StoreSettings.model_fields["backend"].annotation)) == set(BACKENDS)


def test_qdrant_edge_lives_under_data_dir(tmp_path: Path) -> None:
    store = build_store(settings_for(tmp_path, backend="qdrant_edge", hnsw_threshold=123))
    try:
        assert isinstance(store, QdrantEdgeStore)
        assert (tmp_path / "qdrant" / ".lock").exists()
        assert store._index.threshold == 123
    finally:
        store.close()


def test_qdrant_server_uses_url_key_and_timeout(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, backend="qdrant_server", url="https://127.0.0.1:1", api_key="k", timeout_s=2.5
    )
    store = build_store(settings)
    try:
        assert isinstance(store, QdrantServerStore)
        options = store._client.init_options
        assert (options["url"], options["api_key"], options["timeout"]) == (
            "https://127.0.0.1:1",
            "k",
            3,
        )
    finally:
        store.close()
    assert not (tmp_path / "qdrant").exists()


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope"):
        build_store(settings_for(tmp_path, backend="nope"))


def test_the_services_module_still_offers_build_store() -> None:
    from rag_appliance import services

    assert services.build_store is build_store


def test_only_the_chosen_backend_is_imported(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from rag_appliance.settings import load_settings
        from rag_appliance.store.registry import build_store

        settings = load_settings().model_copy(update={"data_dir": Path(sys.argv[1])})
        build_store(settings).close()
        assert "rag_appliance.store.qdrant_edge" in sys.modules
        assert "qdrant_client" not in sys.modules, "the server backend's client was imported"
        """
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, check=True)
