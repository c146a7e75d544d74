"""Query-document pairs: the JSONL file `finetune` reads, its hash, and the held-out split."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag_appliance.errors import InvalidRequest


@dataclass(frozen=True)
class Pair:
    """One training example: a query, a text that answers it and maybe one that does not."""

    query: str
    positive: str
    negative: str | None = None


def _field(row: dict[str, object], key: str, where: str, required: bool) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        kind = "a non-empty string" if key in row else "present"
        raise InvalidRequest(f"{where}: '{key}' must be {kind}", param="pairs")
    return value


def parse_pairs(lines: Iterable[str], source: str) -> list[Pair]:
    """Pairs from JSONL lines; a bad line raises InvalidRequest naming `source` and its number."""
    pairs: list[Pair] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{where}: not valid JSON ({exc.msg})", param="pairs") from None
        if not isinstance(row, dict):
            raise InvalidRequest(f"{where}: expected a JSON object", param="pairs")
        query = _field(row, "query", where, True)
        positive = _field(row, "positive", where, True)
        assert query is not None and positive is not None
        pairs.append(Pair(query, positive, _field(row, "negative", where, False)))
    if not pairs:
        raise InvalidRequest(f"{source}: no pairs (the file is empty)", param="pairs")
    return pairs


def load_pairs(path: Path) -> list[Pair]:
    """Read a JSONL file of {"query", "positive", "negative"?} objects."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequest(f"{path}: no such file", param="pairs") from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"{path}: not UTF-8 text", param="pairs") from None
    except OSError as exc:
        raise InvalidRequest(f"{path}: {exc.strerror or exc}", param="pairs") from None
    return parse_pairs(text.splitlines(), str(path))


def data_hash(pairs: Sequence[Pair]) -> str:
    """sha256 of the pairs in a canonical form: the same data gives the same hash."""
    digest = hashlib.sha256()
    for p in pairs:
        row = {"query": p.query, "positive": p.positive, "negative": p.negative}
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return "sha256:" + digest.hexdigest()


def split_pairs(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): whole queries held out by a seeded hash, independent of file order."""
    if not 0.0 < fraction < 1.0:
        raise InvalidRequest("--eval-split must be between 0 and 1 (exclusive)", param="eval_split")
    queries = sorted({p.query for p in pairs}, key=lambda q: _rank(q, seed))
    if len(queries) < 2:
        raise InvalidRequest(
            "at least 2 distinct queries are needed: one to train on and one to hold out",
            param="pairs",
        )
    # At least one query on each side, whatever the fraction.
    n_held = min(len(queries) - 1, max(1, round(len(queries) * fraction)))
    held = set(queries[:n_held])
    return [p for p in pairs if p.query not in held], [p for p in pairs if p.query in held]


def _rank(query: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{query}".encode()).hexdigest()
