"""The CLI's --server paths: argument checks, and the local commands' hint about --server."""

from __future__ import annotations

import pytest

from rag_appliance import cli, local_commands
from rag_appliance.errors import ServiceUnavailable
from tests.conftest import make_settings


def test_bad_remote_arguments_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:9"
    assert cli.main(["index", ".", "--collection", "c", "--server", url, "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert cli.main(["search", "q", "--collection", "c", "--server", url, "--retries", "-1"]) == 2
    evaluate = ["eval", "--dataset", ".", "--collection", "c", "--server", url, "--exact"]
    assert cli.main(evaluate) == 2
    assert "in-process only" in capsys.readouterr().err
    bad_json = ["index", ".", "--collection", "c", "--server", url, "--metadata", "[1]"]
    assert cli.main(bad_json) == 2


async def test_a_data_dir_held_by_a_server_points_to_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def held(_settings: object) -> None:
        raise ServiceUnavailable("the embedded vector store at /d is in use by another process")

    monkeypatch.setattr(local_commands, "build_services", held)
    with pytest.raises(ServiceUnavailable) as info:
        async with local_commands.running(make_settings()):
            pass
    assert "in use by another process" in info.value.message
    assert "--server URL" in info.value.message


async def test_other_start_failures_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(_settings: object) -> None:
        raise ServiceUnavailable("the store is down")

    monkeypatch.setattr(local_commands, "build_services", down)
    with pytest.raises(ServiceUnavailable) as info:
        async with local_commands.running(make_settings()):
            pass
    assert info.value.message == "the store is down"
