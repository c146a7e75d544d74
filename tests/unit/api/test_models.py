"""GET /v1/models: the served names, then the registry's fine-tuned models with base and metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from rag_appliance.app import create_app
from tests.conftest import make_services, make_settings
from tests.fakes import FakeEncoder
from tests.unit.embedding.test_registry import register


def test_models_lists_registry_models_with_base_and_metrics(tmp_path: Path) -> None:
    register(tmp_path, "docs-minilm", 0.75)
    settings = make_settings().model_copy(update={"data_dir": tmp_path})
    with TestClient(create_app(settings, make_services(settings, FakeEncoder()))) as client:
        data = client.get("/v1/models").json()["data"]
        ids = [m["id"] for m in data]
        assert ids[0] == "fake-model" and ids[-1] == "docs-minilm"
        assert "registry" not in data[0]  # served models keep the plain OpenAI shape
        entry = data[-1]
        assert entry["object"] == "model" and entry["owned_by"] == "rag-appliance"
        assert entry["registry"]["base"] == "all-MiniLM-L6-v2"
        assert entry["registry"]["metrics"]["finetuned"]["ndcg@10"] == 0.75
        assert entry["registry"]["served"] is False
        one = client.get("/v1/models/docs-minilm").json()
        assert one == entry
        assert client.get("/v1/models/not-there").status_code == 404
