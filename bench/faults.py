"""Load and faults: overload -> 429 -> recovery, and SIGKILL mid-index -> consistent after restart.

    python bench/faults.py [--flood-s 8] [--clients 12] [--max-wait-s 0.5] [--docs 24]

(a) Overload. A server subprocess (generation off, UI off) with `embedding.max_queue_wait_s`
set small. Idle: the median latency of small /v1/embeddings requests (one short text), one at
a time. Flood: `clients` closed-loop workers send large requests (`flood_texts` long texts) for
`flood_s` seconds while a prober keeps sending small ones; every 429 must carry Retry-After.
Then the flood stops and the prober goes on: the time until the small requests are back within
`RECOVERED_WITHIN` x the idle median (three in a row), and the median after that against the
idle one (the recovery ratio; 1.0 is full recovery).

(b) SIGKILL mid-index. A server on a fresh data_dir indexes a corpus, then SIGKILLed while a
second, larger index call is half-way through (uncommitted chunks in the store); restarted on
the same data_dir: the time to ready, the chunks the start swept, and the consistency checks
(points == chunks of the listed documents, no pending points, only the first corpus listed);
then the big call re-sent converges.

Prints a table; raw figures to bench/results/faults-cpu-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import re
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx
from corpus import load_corpus
from lib import BENCH
from lib.driver import log
from lib.machine import cpu_info
from lib.results import command_line, dated_path, fmt, markdown_table, ratio, write_json
from lib.servers import (
    EMBEDDINGS_ONLY,
    LOGS,
    Server,
    appliance_spec,
    ensure_ready,
    launch,
    stop_server,
)

RECOVERED_WITHIN = 2.0  # x the idle median: "back to normal"
IN_A_ROW = 3
SWEPT = re.compile(r"deleted (\d+) chunks of an unfinished index")
DATA_DIR = BENCH / ".cache" / "faults-data"


# -- pure helpers (tests/unit/bench/test_faults.py) ----------------------------------------


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def recovered_after(
    probes: Sequence[tuple[float, int, float]], since: float, threshold_s: float, run: int
) -> float | None:
    """Seconds from `since` to the start of the first `run` answered probes in a row that took
    at most `threshold_s` each; None when that never happened.

    A probe is (sent at, HTTP status, seconds); probes sent before `since` do not count, and a
    non-200 answer breaks a run.
    """
    streak: list[float] = []
    for sent, status, seconds in sorted(probes):
        if sent < since:
            continue
        if status == 200 and seconds <= threshold_s:
            streak.append(sent)
            if len(streak) == run:
                return max(0.0, streak[0] - since)
        else:
            streak = []
    return None


def consistency(info: dict[str, Any], listed: dict[str, int]) -> list[str]:
    """What is wrong with a collection's counts against its listed documents (empty: nothing)."""
    problems = []
    if info.get("pending_points", 0):
        problems.append(f"{info['pending_points']} uncommitted points left")
    if info["documents"] != len(listed):
        problems.append(f"documents {info['documents']} but {len(listed)} listed")
    if info["points"] != sum(listed.values()):
        problems.append(
            f"points {info['points']} but the listed documents have {sum(listed.values())} chunks"
        )
    return problems


def swept_chunks(log_text: str) -> int:
    """Chunks the server's start deleted, from its log."""
    return sum(int(m.group(1)) for m in SWEPT.finditer(log_text))


# -- (a) overload ----------------------------------------------------------------------------


async def _probe(client: httpx.AsyncClient, text: str) -> tuple[float, int, float, bool]:
    """One small request: (sent at, status, seconds, has Retry-After when 429)."""
    sent = time.monotonic()
    r = await client.post("/v1/embeddings", json={"input": [text], "encoding_format": "base64"})
    retry = r.status_code != 429 or r.headers.get("retry-after", "").isdigit()
    return sent, r.status_code, time.monotonic() - sent, retry


async def _overload(base: str, args: argparse.Namespace) -> dict[str, Any]:
    corpus = load_corpus()
    short, long = corpus["short"], corpus["long"]
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        for text in short[:5]:  # warm-up
            await _probe(client, text)
        idle = [(await _probe(client, short[i % len(short)]))[2] for i in range(args.probes)]
        idle_p50 = median(idle) or 0.0
        flood: list[tuple[float, int, bool]] = []  # (answered at, status, Retry-After ok)
        probes: list[tuple[float, int, float, bool]] = []
        stop = asyncio.Event()
        started = time.monotonic()

        async def flooder(k: int) -> None:
            i = k
            while not stop.is_set():
                n = args.flood_texts
                texts = [long[(i * n + j) % len(long)] for j in range(n)]
                i += args.clients
                body = {"input": texts, "encoding_format": "base64"}
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.post("/v1/embeddings", json=body)
                    ok = r.status_code != 429 or r.headers.get("retry-after", "").isdigit()
                    flood.append((time.monotonic(), r.status_code, ok))
                    if r.status_code == 429:
                        await asyncio.sleep(0.05)  # a client that does not honour Retry-After

        async def prober(until: float) -> None:
            i = 0
            while time.monotonic() < until:
                probes.append(await _probe(client, short[i % len(short)]))
                i += 1
                await asyncio.sleep(0.1)

        workers = [asyncio.create_task(flooder(k)) for k in range(args.clients)]
        probing = asyncio.create_task(prober(started + args.flood_s + args.recover_s))
        await asyncio.sleep(args.flood_s)
        stop.set()
        stopped = time.monotonic()
        for w in workers:
            w.cancel()  # the client gives up on its requests in flight too
        await asyncio.gather(*workers, return_exceptions=True)
        await probing
        after = [p for p in probes if p[0] >= stopped]
        recovery = recovered_after(
            [p[:3] for p in after], stopped, RECOVERED_WITHIN * idle_p50, IN_A_ROW
        )
        settled = [
            s
            for sent, st, s, _ in after
            if st == 200 and recovery is not None and sent >= stopped + recovery
        ]
    rejected = [f for f in flood if f[1] == 429] + [
        (p[0], p[1], p[3]) for p in probes if p[1] == 429
    ]
    first = min((f[0] for f in flood if f[1] == 429), default=None)
    statuses = sorted({f[1] for f in flood} | {p[1] for p in probes})
    return {
        "max_queue_wait_s": args.max_wait_s,
        "clients": args.clients,
        "flood_texts": args.flood_texts,
        "flood_s": args.flood_s,
        "idle_p50_s": idle_p50,
        "flood_requests": len(flood),
        "flood_429": sum(1 for f in flood if f[1] == 429),
        "probe_requests": len(probes),
        "probe_429": sum(1 for p in probes if p[1] == 429),
        "statuses": statuses,
        "retry_after_on_every_429": all(ok for _, _, ok in rejected),
        "first_429_after_s": None if first is None else first - started,
        "recovered_after_s": recovery,
        "recovered_p50_s": median(settled),
        "recovery_ratio": ratio(median(settled), idle_p50),
    }


def overload(args: argparse.Namespace) -> dict[str, Any]:
    """Run (a) against its own server."""
    env = {
        **EMBEDDINGS_ONLY,
        "RAG_EMBEDDING__MAX_QUEUE_WAIT_S": str(args.max_wait_s),
        "RAG_DATA_DIR": str(DATA_DIR / "overload"),
    }
    shutil.rmtree(DATA_DIR / "overload", ignore_errors=True)
    server = launch(appliance_spec("faults-overload"), env=env)
    try:
        ensure_ready(server)
        return asyncio.run(_overload(server.base, args))
    finally:
        stop_server(server.proc)


# -- (b) SIGKILL mid-index --------------------------------------------------------------------


def _documents(first: int, count: int, paragraphs: int) -> list[dict[str, Any]]:
    medium = load_corpus()["medium"]
    return [
        {
            "id": f"doc-{i}",
            "text": "\n\n".join(
                medium[(i * paragraphs + j) % len(medium)] for j in range(paragraphs)
            ),
        }
        for i in range(first, first + count)
    ]


def _state(client: httpx.Client) -> tuple[dict[str, Any], dict[str, int]]:
    info = client.get("/v1/collections/kb").json()
    docs = client.get("/v1/collections/kb/documents", params={"limit": 1000}).json()["data"]
    return info, {d["id"]: d["chunks"] for d in docs}


def _start(name: str, env: dict[str, str]) -> tuple[Server, float]:
    started = time.perf_counter()
    server = launch(appliance_spec(name), env=env)
    ensure_ready(server)
    return server, time.perf_counter() - started


def sigkill(args: argparse.Namespace) -> dict[str, Any]:
    """Run (b): index, SIGKILL mid-way through a bigger call, restart, check, re-send."""
    data = DATA_DIR / "sigkill"
    shutil.rmtree(data, ignore_errors=True)
    env = {**EMBEDDINGS_ONLY, "RAG_DATA_DIR": str(data), "RAG_INGEST__EMBED_BATCH": "64"}
    small = _documents(0, args.docs, 3)
    big = _documents(args.docs, args.docs * 4, 7)
    server, first_ready = _start("faults-index", env)
    try:
        with httpx.Client(base_url=server.base, timeout=600) as client:
            r = client.post("/v1/index", json={"collection": "kb", "documents": small})
            r.raise_for_status()

            async def send_big() -> None:
                async with httpx.AsyncClient(base_url=server.base, timeout=600) as c:
                    with contextlib.suppress(httpx.HTTPError):
                        await c.post("/v1/index", json={"collection": "kb", "documents": big})

            async def kill_mid_way() -> dict[str, Any]:
                sending = asyncio.create_task(send_big())
                deadline = time.monotonic() + 300
                while True:
                    info, _ = await asyncio.to_thread(_state, client)
                    if info["pending_points"] >= 128 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                server.proc.send_signal(signal.SIGKILL)
                server.proc.wait(30)
                await sending
                return dict(info)

            at_kill = asyncio.run(kill_mid_way())
    finally:
        stop_server(server.proc)
    server, restart_ready = _start("faults-restart", env)
    try:
        with httpx.Client(base_url=server.base, timeout=600) as client:
            info, listed = _state(client)
            problems = consistency(info, listed)
            if set(listed) != {d["id"] for d in small}:
                problems.append(f"listed {len(listed)} documents, not the {len(small)} indexed")
            started = time.perf_counter()
            r = client.post("/v1/index", json={"collection": "kb", "documents": small + big})
            r.raise_for_status()
            resend_s = time.perf_counter() - started
            info2, listed2 = _state(client)
            problems += [f"after re-sending: {p}" for p in consistency(info2, listed2)]
            if len(listed2) != len(small) + len(big):
                problems.append(f"after re-sending: {len(listed2)} documents listed")
    finally:
        stop_server(server.proc)
    return {
        "documents_first": len(small),
        "documents_big": len(big),
        "at_kill": {k: at_kill.get(k) for k in ("documents", "points", "pending_points")},
        "first_ready_s": first_ready,
        "restart_ready_s": restart_ready,
        "swept_chunks": swept_chunks((LOGS / "faults-restart.log").read_text(errors="replace")),
        "after_restart": {k: info.get(k) for k in ("documents", "points", "pending_points")},
        "resend_s": resend_s,
        "resend_unchanged": r.json()["unchanged"],
        "after_resend": {k: info2.get(k) for k in ("documents", "points", "pending_points")},
        "problems": problems,
    }


# -- report ----------------------------------------------------------------------------------


def report(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    """The markdown tables."""
    out = []
    if a is not None:
        rows = [
            ["idle median, 1 short text", fmt(a["idle_p50_s"] * 1000, ".1f", " ms")],
            ["flood requests / 429s", f"{a['flood_requests']} / {a['flood_429']}"],
            ["probe requests / 429s", f"{a['probe_requests']} / {a['probe_429']}"],
            ["statuses seen", ", ".join(map(str, a["statuses"]))],
            ["Retry-After on every 429", "yes" if a["retry_after_on_every_429"] else "NO"],
            ["first 429 after flood start", fmt(a["first_429_after_s"], ".2f", " s")],
            ["recovered after flood stop", fmt(a["recovered_after_s"], ".2f", " s")],
            ["median after recovery", fmt((a["recovered_p50_s"] or 0) * 1000, ".1f", " ms")],
            ["recovery ratio (after / idle)", fmt(a["recovery_ratio"], ".2f")],
        ]
        title = (
            f"(a) overload: {a['clients']} clients x {a['flood_texts']} long texts "
            f"for {a['flood_s']:g} s, "
            f"max_queue_wait_s {a['max_queue_wait_s']:g}"
        )
        out += [title, "", markdown_table(["measure", "value"], "lr", rows), ""]
    if b is not None:

        def counts(c: dict[str, Any]) -> str:
            return f"{c['documents']} docs, {c['points']} points, {c['pending_points']} pending"

        rows = [
            ["first start to ready", fmt(b["first_ready_s"], ".1f", " s")],
            ["at the kill", counts(b["at_kill"])],
            ["restart to ready (after SIGKILL)", fmt(b["restart_ready_s"], ".1f", " s")],
            ["chunks swept at start", str(b["swept_chunks"])],
            ["after restart", counts(b["after_restart"])],
            ["re-send all, seconds", fmt(b["resend_s"], ".1f", " s")],
            ["after re-send", counts(b["after_resend"])],
            ["consistent", "yes" if not b["problems"] else "NO: " + "; ".join(b["problems"])],
        ]
        title = (
            f"(b) SIGKILL mid-index: {b['documents_first']} documents, then "
            f"{b['documents_big']} in one call killed half-way"
        )
        out += [title, "", markdown_table(["measure", "value"], "lr", rows)]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood-s", type=float, default=8.0)
    parser.add_argument("--recover-s", type=float, default=30.0, help="probing after the flood")
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--flood-texts", type=int, default=32, help="long texts per request")
    parser.add_argument("--max-wait-s", type=float, default=0.5)
    parser.add_argument("--probes", type=int, default=30, help="idle requests for the median")
    parser.add_argument("--docs", type=int, default=24, help="first corpus; the big call: 4x")
    parser.add_argument("--only", choices=["overload", "sigkill"])
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    a = overload(args) if args.only in (None, "overload") else None
    b = sigkill(args) if args.only in (None, "sigkill") else None
    now = dt.datetime.now(dt.UTC)
    path = dated_path("faults", "cpu", now, args.out)
    write_json(
        path,
        {
            "command": command_line(),
            "when": now.isoformat(),
            "cpu": cpu_info(),
            "overload": a,
            "sigkill": b,
        },
    )
    print(f"Command: `{command_line()}`\n")
    print(report(a, b))
    log(f"raw results: {path}")
    failed = (a is not None and (not a["retry_after_on_every_429"] or not a["flood_429"])) or (
        b is not None and bool(b["problems"])
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
