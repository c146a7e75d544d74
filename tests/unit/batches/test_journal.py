"""The journal: results recorded a chunk at a time, exactly once across a torn write."""

from __future__ import annotations

from pathlib import Path

from rag_appliance.batches.journal import Journal, valid_id

BATCH = "batch_" + "ab" * 12


def new(tmp_path: Path) -> Journal:
    return Journal.create(tmp_path, {"id": BATCH, "status": "in_progress"})


def test_a_restart_drops_a_torn_line_and_an_unrecorded_chunk(tmp_path: Path) -> None:
    journal = new(tmp_path)
    journal.append([b'{"custom_id":"a"}', b'{"custom_id":"b"}'], [b'{"custom_id":"c"}'], 3)
    # The process died while writing the next chunk: a whole line and a torn one, no progress.
    with open(journal.output_path, "ab") as f:
        f.write(b'{"custom_id":"d"}\n{"custom_id":"e"')
    with open(journal.errors_path, "ab") as f:
        f.write(b'{"custom_id":"f"}\n')
    reloaded = Journal.load(journal.folder)
    assert reloaded.resume() == 3
    assert journal.output_path.read_bytes() == b'{"custom_id":"a"}\n{"custom_id":"b"}\n'
    assert journal.errors_path.read_bytes() == b'{"custom_id":"c"}\n'
    # Redoing the chunk writes each of its lines once.
    reloaded.append([b'{"custom_id":"d"}', b'{"custom_id":"e"}'], [], 5, completed=4)
    ids = journal.output_path.read_text().splitlines()
    assert ids == [f'{{"custom_id":"{c}"}}' for c in "abde"]
    again = Journal.load(journal.folder)
    assert again.progress["next_line"] == 5 and again.state["request_counts"]["completed"] == 4
    assert again.resume() == 5
    assert journal.output_path.read_text().splitlines() == ids


def test_a_fresh_journal_resumes_at_the_start(tmp_path: Path) -> None:
    journal = new(tmp_path)
    assert Journal.load(journal.folder).resume() == 0
    assert journal.output_path.read_bytes() == b""


def test_a_published_output_is_not_recreated_on_resume(tmp_path: Path) -> None:
    journal = new(tmp_path)
    journal.append([b"{}"], [], 1)
    journal.output_path.rename(tmp_path / "published")  # the file store adopted it
    assert journal.resume() == 1
    assert not journal.output_path.exists()


def test_only_batch_ids_name_journals() -> None:
    assert valid_id(BATCH)
    for bad in ("batch_../../x", "batch_" + "AB" * 12, "file-" + "ab" * 12, BATCH + "0"):
        assert not valid_id(bad)
