"""bench/gpu.py's report: (e) the ratios, the acceptance bars, the table and the JSON line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from lib.results import Bar, dated_path, fmt, markdown_table, ratio, slug, verdict

PARTS = ("ceiling", "engine", "appliance", "seed")
ACCEPTANCE_MODEL = "bge-large"
BARS: tuple[Bar, ...] = (
    Bar("long", "ceiling", 0.85),
    Bar("medium", "ceiling", 0.75),
    Bar("short", "ceiling", 0.60),
    Bar("short", "seed", 25.0),
    Bar("medium", "seed", 25.0),
)
TABLE_COLUMNS = (
    "model",
    "bucket",
    "tokens/text",
    "(a) ceiling",
    "(b) engine",
    "(c) appliance HTTP",
    "(d) seed HTTP",
    "appliance/ceiling",
    "engine/ceiling",
    "appliance/seed",
    "appliance batches (texts, fill)",
    "min cos vs seed",
)


def rate(row: dict[str, Any], part: str) -> float | None:
    """texts/s of one part of one bucket's row, if measured."""
    value = row.get(part, {}).get("texts_per_s")
    return None if value is None else float(value)


def add_ratios(row: dict[str, Any]) -> None:
    """(e): appliance/ceiling, engine/ceiling, appliance/engine, appliance/seed."""
    row["ratios"] = {
        "appliance/ceiling": ratio(rate(row, "appliance"), rate(row, "ceiling")),
        "engine/ceiling": ratio(rate(row, "engine"), rate(row, "ceiling")),
        "appliance/engine": ratio(rate(row, "appliance"), rate(row, "engine")),
        "appliance/seed": ratio(rate(row, "appliance"), rate(row, "seed")),
    }


def acceptance(models: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bar against the BGE-large architecture's end-to-end figures: PASS, FAIL or SKIP."""
    out = []
    for bar in BARS:
        row = models.get(ACCEPTANCE_MODEL, {}).get("buckets", {}).get(bar.bucket, {})
        value = row.get("ratios", {}).get(bar.metric)
        out.append(
            {
                "model": ACCEPTANCE_MODEL,
                "bucket": bar.bucket,
                "metric": bar.metric,
                "at_least": bar.at_least,
                "value": value,
                "appliance_texts_per_s": rate(row, "appliance"),
                f"{bar.versus}_texts_per_s": rate(row, bar.versus),
                "status": verdict(value, bar.at_least),
            }
        )
    return out


def acceptance_line(check: dict[str, Any]) -> str:
    """`PASS bge-large long: appliance/ceiling 0.91 >= 0.85 (1,283 vs 1,411 texts/s)`."""
    head = f"{check['status']} {check['model']} {check['bucket']}: {check['metric']}"
    if check["value"] is None:
        return f"{head} >= {check['at_least']:g}: not measured"
    versus = check["metric"].split("/")[1]
    return (
        f"{head} {check['value']:.2f} >= {check['at_least']:g}"
        f" ({check['appliance_texts_per_s']:,.0f} vs {check[f'{versus}_texts_per_s']:,.0f} texts/s)"
    )


def table_row(key: str, bucket: str, row: dict[str, Any]) -> list[str]:
    """One model and bucket's cells."""
    ceiling = row.get("ceiling", {})
    shape = f" (B{ceiling['batch']}xS{ceiling['seq']})" if ceiling else ""
    appl = row.get("appliance", {})
    batches = (
        f"{appl['texts_per_pass']:.0f}, {appl['fill']:.2f}"
        if appl.get("texts_per_pass") is not None and appl.get("fill") is not None
        else "-"
    )
    cos = row.get("min_cosine", {}).get("appliance_vs_seed")
    r = row["ratios"]
    return [
        key,
        bucket,
        f"{row['mean_tokens']:.1f}",
        f"{fmt(rate(row, 'ceiling'))}{shape}",
        fmt(rate(row, "engine")),
        fmt(rate(row, "appliance")),
        fmt(rate(row, "seed")),
        fmt(r["appliance/ceiling"], ".2f", "x"),
        fmt(r["engine/ceiling"], ".2f", "x"),
        fmt(r["appliance/seed"], ".1f", "x"),
        batches,
        fmt(cos, ".4f"),
    ]


def report_table(models: dict[str, Any]) -> str:
    """The markdown table: one row per model and bucket."""
    rows = [
        table_row(key, bucket, row)
        for key, model in models.items()
        for bucket, row in model["buckets"].items()
    ]
    return markdown_table(TABLE_COLUMNS, "ll" + "r" * 10, rows)


def summary_line(result: dict[str, Any]) -> str:
    """The one-line JSON summary: texts/s per part and the ratios, per model and bucket."""
    short: dict[str, Any] = {}
    for key, model in result["models"].items():
        short[key] = {
            bucket: {
                "tokens": round(row["mean_tokens"], 1),
                **{p: rate(row, p) for p in PARTS},
                **row["ratios"],
            }
            for bucket, row in model["buckets"].items()
        }
    checks = {
        f"{c['bucket']} {c['metric']} >= {c['at_least']:g}": c["status"]
        for c in result["acceptance"]
    }
    return json.dumps(
        {
            "bench": "gpu",
            "device": result["machine"]["device_name"],
            "date": result["date"],
            "smoke": result["params"]["smoke"],
            "texts_per_s": short,
            "acceptance": checks,
            "errors": len(result["errors"]),
            "seconds": result["seconds"],
        },
        separators=(",", ":"),
    )


def output_path(args: argparse.Namespace, device_name: str, now: dt.datetime) -> Path:
    """bench/results/gpu-<device>[-smoke]-<date>.json, never overwriting an earlier run."""
    tag = slug(device_name) + ("-smoke" if args.smoke else "")
    return dated_path("gpu", tag, now, out=args.out)
