"""Where results go and how they read: file names, ratios, markdown tables, PASS/FAIL bars."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib import BENCH

RESULTS = BENCH / "results"


def command_line() -> str:
    """This process's command line, as it was typed (for the report and the raw file)."""
    return shlex.join(sys.orig_argv)


def slug(text: str) -> str:
    """`NVIDIA H200` -> `nvidia-h200`: lower-case letters and digits, runs of others as one -."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def dated_path(
    kind: str,
    tag: str,
    now: dt.datetime,
    out: str | Path | None = None,
    keep_earlier: bool = True,
) -> Path:
    """`out` if given, else bench/results/<kind>-<tag>-<date>.json.

    With `keep_earlier` a later run on the same day never overwrites an earlier one: it gets
    <kind>-<tag>-<date>-<HHMMSS>.json instead.
    """
    if out:
        return Path(out)
    path = RESULTS / f"{kind}-{tag}-{now:%Y-%m-%d}.json"
    if keep_earlier and path.exists():
        path = path.with_name(f"{kind}-{tag}-{now:%Y-%m-%d-%H%M%S}.json")
    return path


def write_json(path: Path, data: Any) -> None:
    """The raw results, indented, its folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    """a / b rounded, or None when either is missing (or b is 0)."""
    if a is None or not b:
        return None
    return round(a / b, digits)


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    """A number for a table, '-' when missing."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def markdown_table(columns: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> str:
    """A markdown table; `align` has one letter per column: l (left) or r (right)."""
    if len(align) != len(columns) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r} does not fit {len(columns)} columns")
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"{len(row)} cells for {len(columns)} columns: {row}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Bar:
    """One acceptance line: appliance / `versus` on `bucket` must reach `at_least`."""

    bucket: str
    versus: str
    at_least: float

    @property
    def metric(self) -> str:
        """The ratio it judges, e.g. `appliance/ceiling`."""
        return f"appliance/{self.versus}"


def verdict(value: float | None, at_least: float) -> str:
    """PASS when `value` reaches the bar, FAIL when not, SKIP when it was not measured."""
    if value is None:
        return "SKIP"
    return "PASS" if value >= at_least else "FAIL"


def one_line(text: str) -> str:
    """A message's first line, plus its last one when they differ (a server log's tail)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [""]
    joined = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return joined[:600]
