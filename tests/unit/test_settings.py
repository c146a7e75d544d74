"""Settings: defaults, YAML profiles, RAG_* overrides, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_appliance.errors import SettingsError
from rag_appliance.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_cpu_profile() -> None:
    assert load_settings().model_dump() == load_settings(ROOT / "configs" / "cpu.yaml").model_dump()
    s = load_settings()
    assert s.embedding.model == "all-MiniLM-L6-v2"
    assert s.embedding.max_inputs_per_request == 2048
    assert s.server.port == 8000


def test_env_overrides_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "embedding:\n  batch_max_size: 32\n  truncate: false\nserver:\n  port: 9000\n"
    )
    monkeypatch.setenv("RAG_EMBEDDING__BATCH_MAX_SIZE", "16")
    monkeypatch.setenv("RAG_SERVER__API_KEYS", '["k1", "k2"]')
    s = load_settings(profile)
    assert s.embedding.batch_max_size == 16  # env wins over YAML
    assert s.embedding.truncate is False  # YAML wins over defaults
    assert s.server.port == 9000
    assert s.server.api_keys == ["k1", "k2"]
    assert s.embedding.model == "all-MiniLM-L6-v2"  # untouched defaults survive partial sections


def test_invalid_value_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_EMBEDDING__DTYPE", "float8")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert "embedding.dtype" in message and "RAG_EMBEDDING__DTYPE" in message


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("embedding:\n  modle: x\n")
    with pytest.raises(SettingsError, match=r"embedding\.modle"):
        load_settings(profile)


def test_missing_config_file() -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings("/nonexistent/profile.yaml")


def test_broken_yaml_is_one_line(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("embedding: [unclosed\n")
    with pytest.raises(SettingsError) as info:
        load_settings(profile)
    assert "\n" not in str(info.value)


def test_every_field_has_a_description() -> None:
    from pydantic import BaseModel

    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} lacks a description"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation)

    walk(Settings)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_profiles_validate(name: str) -> None:
    load_settings(ROOT / "configs" / name)


def test_token_ids_are_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().embedding.accept_token_ids is False
    monkeypatch.setenv("RAG_EMBEDDING__ACCEPT_TOKEN_IDS", "true")
    assert load_settings().embedding.accept_token_ids is True
