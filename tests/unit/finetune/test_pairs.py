"""Pairs files: parsing errors name the file and line; the held-out split is deterministic."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rag_appliance.errors import InvalidRequest
from rag_appliance.finetune.pairs import Pair, data_hash, load_pairs, split_pairs


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"query": "q", "positive": "p"})


def test_reads_pairs_with_and_without_negatives(tmp_path: Path) -> None:
    row = json.dumps({"query": "q2", "positive": "p2", "negative": "n2"})
    pairs = load_pairs(write(tmp_path, [GOOD, "", row]))
    assert pairs == [Pair("q", "p"), Pair("q2", "p2", "n2")]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"query": "q"}), "'positive' must be present"),
        (json.dumps({"query": "", "positive": "p"}), "'query' must be a non-empty string"),
        (json.dumps({"query": "q", "positive": 3}), "'positive' must be a non-empty string"),
        (json.dumps({"query": "q", "positive": "p", "negative": ""}), "'negative'"),
    ],
)
def test_a_bad_line_is_named_by_number(tmp_path: Path, bad: str, words: str) -> None:
    path = write(tmp_path, [GOOD, GOOD, bad, GOOD])
    with pytest.raises(InvalidRequest) as info:
        load_pairs(path)
    assert f"{path} line 3: " in info.value.message
    assert words in info.value.message
    assert info.value.param == "pairs"


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidRequest, match="no pairs"):
        load_pairs(path)


def test_a_missing_or_binary_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="no such file"):
        load_pairs(tmp_path / "nope.jsonl")
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        load_pairs(binary)


def pairs_of(n: int) -> list[Pair]:
    # Two pairs share each query: a split must keep them together.
    return [Pair(f"query {i // 2}", f"text {i}") for i in range(n)]


def test_split_is_deterministic_whole_queries_and_order_independent() -> None:
    pairs = pairs_of(40)
    train, held = split_pairs(pairs, 0.25, seed=7)
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    train2, held2 = split_pairs(shuffled, 0.25, seed=7)
    assert {p.query for p in held} == {p.query for p in held2}
    assert len({p.query for p in held}) == 5  # a quarter of the 20 queries
    assert not {p.query for p in train} & {p.query for p in held}
    assert len(train) + len(held) == 40 and len(train2) + len(held2) == 40
    other = split_pairs(pairs, 0.25, seed=8)[1]
    assert {p.query for p in other} != {p.query for p in held}  # the seed matters


def test_split_keeps_one_query_on_each_side_and_refuses_too_few() -> None:
    train, held = split_pairs(pairs_of(4), 0.01, seed=1)
    assert len({p.query for p in held}) == 1 and len({p.query for p in train}) == 1
    with pytest.raises(InvalidRequest, match="at least 2 distinct queries"):
        split_pairs(pairs_of(2), 0.2, seed=1)
    with pytest.raises(InvalidRequest, match="eval-split"):
        split_pairs(pairs_of(10), 1.0, seed=1)


def test_data_hash_changes_with_the_data() -> None:
    pairs = pairs_of(6)
    assert data_hash(pairs) == data_hash(list(pairs))
    assert data_hash(pairs) != data_hash([*pairs[:-1], Pair("query 2", "text 5", "neg")])
    assert data_hash(pairs).startswith("sha256:")
