"""bench/build_finetune_pairs.py: no test query or test answer reaches the training pairs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
BODY = "It keeps several versions of every member and checks them again on extraction. " * 2


@pytest.fixture
def builder(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The script as a module (it runs as `python bench/build_finetune_pairs.py`)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("build_finetune_pairs")


def _test_set(folder: Path, answer: str) -> Path:
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": "tarfile.open", "title": "tarfile.open", "text": answer}]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    query = {"_id": "q0001", "text": "Open an archive for reading or writing"}
    (folder / "queries.jsonl").write_text(json.dumps(query) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq0001\ttarfile.open\t1\n"
    )
    return folder


def test_leaves_out_test_answers_close_queries_and_own_names(builder: Any, tmp_path: Path) -> None:
    answer = "Return a TarFile object for the given name. " + BODY
    folder = _test_set(tmp_path / "test", answer)
    entry = builder.Entry

    def e(name: str, doc: str) -> Any:
        return entry(name, "function", "x.py", 1, doc)

    entries = [
        e("tarfile.open", f"Open a tar archive for reading.\n\n{answer}"),  # a test answer
        # The same text under another name (a vendored copy): still a test answer.
        e("vendored.tar.open_it", f"Make a handle of a stored bundle.\n\n{answer}"),
        e("zipfile.open2", f"Open an archive for reading or writing.\n\n{BODY} A"),  # test query
        e("gzip.compress", f"Compress the data and return the compressed bytes.\n\n{BODY} B"),
        e("shutil.copy_file", f"Duplicate one file to another place on disk.\n\n{BODY} C"),
    ]
    pairs, counts = builder.build_pairs(entries, folder, n_pairs=10)
    assert sorted(p["positive"].split("\n")[0] for p in pairs) == [
        "gzip.compress",
        "shutil.copy_file",
    ]
    assert counts["test_document"] == 2 and counts["close_to_test_query"] == 1
    # As the test set's own queries: a summary naming its entry ("compress") is left out.
    pairs, counts = builder.build_pairs(entries, folder, n_pairs=10, own_name=False)
    assert [p["positive"].split("\n")[0] for p in pairs] == ["shutil.copy_file"]
    assert counts["own_name"] == 2  # gzip.compress, and tarfile.open (a test answer anyway)
    assert all(p["query"] != "Open an archive for reading or writing" for p in pairs)


def test_per_package_cap(builder: Any, tmp_path: Path) -> None:
    folder = _test_set(tmp_path / "test", "Return a TarFile object for the given name. " + BODY)
    words = {"big": ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"], "small": ["eta", "nu"]}
    entries = [
        builder.Entry(f"{pkg}.f{i}", "function", "x.py", 1, f"Do {w} things now.\n\n{BODY}{w}")
        for pkg, names in words.items()
        for i, w in enumerate(names)
    ]
    pairs, counts = builder.build_pairs(entries, folder, n_pairs=100, per_package=3)
    packages = [p["positive"].split(".")[0] for p in pairs]
    assert packages.count("big") == 3 and packages.count("small") == 2
    assert counts["per_package_cap"] == 3
