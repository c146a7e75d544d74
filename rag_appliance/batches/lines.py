"""The input file's JSONL lines: each a request object, checked as OpenAI checks them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

EMBEDDINGS = "/v1/embeddings"
INDEX = "/v1/index"  # the extension: each line a /v1/index body (embed-and-index)
ENDPOINTS = (EMBEDDINGS, INDEX)
_FIELDS = ("custom_id", "method", "url", "body")
MAX_CUSTOM_ID = 512


@dataclass(frozen=True)
class LineRequest:
    """A valid line: one request to run."""

    line: int  # 1-based, as editors count
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class LineError:
    """A line that is not a valid request: reported, never run."""

    line: int
    custom_id: str | None
    code: str
    message: str
    param: str | None = None

    def listed(self) -> dict[str, Any]:
        """The entry of the batch's `errors.data`."""
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


def read_lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes) of each non-blank line after the first `start` lines."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number <= start:
                continue
            stripped = raw.strip()
            if stripped:
                yield number, stripped


def parse_line(raw: bytes, line: int, endpoint: str, seen: set[str]) -> LineRequest | LineError:
    """One line checked against the batch's endpoint; adds a valid custom_id to `seen`."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return LineError(line, None, "invalid_json_line", f"Line {line} is not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return LineError(line, None, "invalid_json_line", f"Line {line} is not a JSON object.")
    custom_id = obj.get("custom_id")
    cid = custom_id if isinstance(custom_id, str) else None
    for name in _FIELDS:
        if name not in obj:
            return LineError(
                line,
                cid,
                "missing_required_parameter",
                f"Line {line} is missing the required parameter '{name}'.",
                name,
            )
    if cid is None or not cid or len(cid) > MAX_CUSTOM_ID:
        return LineError(
            line,
            None,
            "invalid_custom_id",
            f"Line {line}: 'custom_id' must be a non-empty string of at most"
            f" {MAX_CUSTOM_ID} characters.",
            "custom_id",
        )
    if obj["method"] != "POST":
        return LineError(
            line, cid, "invalid_method", f"Line {line}: 'method' must be 'POST'.", "method"
        )
    if obj["url"] != endpoint:
        return LineError(
            line,
            cid,
            "mismatched_endpoint",
            f"Line {line}: the url {str(obj['url'])[:200]!r} does not match the batch's"
            f" endpoint '{endpoint}'.",
            "url",
        )
    if not isinstance(obj["body"], dict):
        return LineError(
            line, cid, "invalid_body", f"Line {line}: 'body' must be a JSON object.", "body"
        )
    if cid in seen:
        return LineError(
            line,
            cid,
            "duplicate_custom_id",
            f"Line {line}: the custom_id {cid!r} is a duplicate of an earlier request; it must"
            " be unique within a batch.",
            "custom_id",
        )
    seen.add(cid)
    return LineRequest(line, cid, obj["body"])


@dataclass
class Validation:
    """What a pass over the input found: requests, invalid lines (the first few listed)."""

    total: int = 0
    invalid: int = 0
    listed: list[dict[str, Any]] | None = None


def validate(path: Path, endpoint: str, max_listed: int) -> Validation:
    """Check every line once (at `validating`), without keeping the requests."""
    result = Validation(listed=[])
    seen: set[str] = set()
    assert result.listed is not None
    for number, raw in read_lines(path):
        result.total += 1
        parsed = parse_line(raw, number, endpoint, seen)
        if isinstance(parsed, LineError):
            result.invalid += 1
            if len(result.listed) < max_listed:
                result.listed.append(parsed.listed())
    return result


def count_lines(path: Path) -> int:
    """Non-blank lines of a file (checked against batch.max_lines on upload)."""
    return sum(1 for _ in read_lines(path))
