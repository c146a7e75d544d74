"""The same files through HTTP upload, the web UI's action and the CLI: the same documents.

Real model, real embedded stores (one per way in, so that each is checked on its own).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import httpx

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.local_commands import index_command
from rag_appliance.settings import Settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from rag_appliance.ui.actions import Actions
from tests import docs_factory
from tests.conftest import live_server, make_services, make_settings

COLLECTION = "kb"
MEDIA_TYPES = {".md": "text/markdown", ".pdf": "application/pdf", ".txt": "text/plain"}


def settings_in(data_dir: Path) -> Settings:
    # Small chunks, so that every file is several chunks and their counts say something.
    settings = make_settings(
        ingest={"chunk_max_tokens": 32, "chunk_overlap_tokens": 4},
        generation={"enabled": False},
        server={"ui": False},
    )
    return settings.model_copy(update={"data_dir": data_dir})


def stored(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every document's chunk payloads in chunk order, without the indexing time."""
    store = QdrantEdgeStore(data_dir / "qdrant")
    try:
        records, cursor = store.scroll(COLLECTION, None, 10_000)
        assert cursor is None
    finally:
        store.close()
    docs: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        payload = {k: v for k, v in record.payload.items() if k != "indexed_at"}
        docs.setdefault(payload["doc_id"], []).append(payload)
    return {d: sorted(chunks, key=lambda c: c["chunk_index"]) for d, chunks in docs.items()}


def upload(url: str, named: Iterable[tuple[str, Path]]) -> list[dict[str, Any]]:
    parts = [("files", (name, path.read_bytes(), MEDIA_TYPES[path.suffix])) for name, path in named]
    with httpx.Client(base_url=url, timeout=120) as api:
        r = api.post("/v1/index/upload", data={"collection": COLLECTION}, files=parts)
    assert r.status_code == 200, r.text
    files: list[dict[str, Any]] = r.json()["files"]
    return files


async def ui_upload(settings: Settings, encoder: Encoder, paths: list[Path]) -> list[list[Any]]:
    services = make_services(settings, encoder, QdrantEdgeStore(settings.data_dir / "qdrant"))
    await services.start()
    try:
        steps: list[Any] = []
        progress = cast(Any, lambda *args, **kwargs: steps.append(args[0]))
        rows, cleared = await Actions(lambda: services).upload(
            [str(p) for p in paths], COLLECTION, progress
        )
    finally:
        await services.stop()
    assert cleared is None  # everything went in: the file box is cleared
    assert steps[-1] == (len(paths), len(paths))  # progress reached the end, file by file
    return rows


def test_same_file_via_http_upload_ui_and_cli(encoder: Encoder, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    guide = docs_factory.make_md(folder, "Deployment freezes start on the second Thursday.")
    report = docs_factory.make_pdf(folder, "The robotics club gets forty thousand credits.")
    nested = docs_factory.make_txt(folder / "team", "The keeper feeds eleven goats.", "notes.txt")
    top_level = [guide, report]

    cli_dir = tmp_path / "cli"
    assert asyncio.run(index_command(settings_in(cli_dir), [str(folder)], COLLECTION, {})) == 0

    http_dir = tmp_path / "http"
    settings = settings_in(http_dir)
    with live_server(settings, encoder, QdrantEdgeStore(http_dir / "qdrant")) as url:
        # A client sends the names it has: base names, and the folder path for the nested file.
        files = upload(url, [(p.name, p) for p in top_level] + [("team/notes.txt", nested)])
    assert [f["status"] for f in files] == ["indexed"] * 3

    # Gradio hands the handler temporary copies whose last path part is the original name.
    ui_dir = tmp_path / "ui"
    copies = []
    for n, path in enumerate(top_level):
        copy = tmp_path / "gradio" / f"{n:040x}" / path.name
        copy.parent.mkdir(parents=True)
        copies.append(Path(shutil.copy(path, copy)))
    rows = asyncio.run(ui_upload(settings_in(ui_dir), encoder, copies))
    assert [(r[0], r[1]) for r in rows] == [("doc.md", "indexed"), ("doc.pdf", "indexed")]

    via_cli, via_http, via_ui = stored(cli_dir), stored(http_dir), stored(ui_dir)
    assert set(via_cli) == set(via_http) == {"doc.md", "doc.pdf", "team/notes.txt"}
    assert set(via_ui) == {"doc.md", "doc.pdf"}
    for doc_id in ("doc.md", "doc.pdf"):
        assert via_cli[doc_id] == via_http[doc_id] == via_ui[doc_id], doc_id
    assert via_cli["team/notes.txt"] == via_http["team/notes.txt"]

    first = via_cli["doc.md"][0]
    assert len(via_cli["doc.md"]) > 1 and first["chunk_count"] == len(via_cli["doc.md"])
    assert first["source"] == "doc.md"
    assert first["metadata"] == {
        "filename": "doc.md",
        "media_type": "text/markdown",
        "title": "Test Document",
    }
    assert via_cli["doc.pdf"][0]["metadata"]["title"] == "Test PDF"
    notes = via_cli["team/notes.txt"][0]
    assert notes["source"] == "team/notes.txt" and notes["metadata"]["filename"] == "notes.txt"
    # The chunk counts reported on the way in are the stored ones.
    assert {f["doc_id"]: f["chunks"] for f in files} == {d: len(c) for d, c in via_http.items()}
    assert {r[0]: r[2] for r in rows} == {d: len(c) for d, c in via_ui.items()}
