"""What the search log costs a search, and how fast `pairs export` reads a log.

    python bench/search_log.py [--docs 300] [--rounds 4] [--per-round 200] [--events 20000]

In this process: the real embedding model (CPU profile), the embedded store under a temporary
data dir, the FastAPI app over httpx's ASGI transport (no sockets: the log's cost is not hidden
by network noise). The tests/data/beir-pystdlib corpus is indexed, then its queries are sent to
POST /v1/search, each query with the search log off and on back to back (in alternating
order), so drift hits both alike; p50/p95 per side and on/off ratios are printed. Then a log of
`--events` searches (each with positive and negative feedback on real chunks) is written with
the log's own writer, and `export_pairs` reads it against the store: events per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data" / "beir-pystdlib"


def _load(docs: int) -> tuple[list[dict[str, str]], list[str]]:
    corpus = [json.loads(line) for line in (DATA / "corpus.jsonl").open()][:docs]
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()]
    return [{"id": d["_id"], "text": d["text"]} for d in corpus], queries


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from rag_appliance.app import create_app
    from rag_appliance.feedback.log import chunk_id, log_dir
    from rag_appliance.feedback.pairs import export_pairs
    from rag_appliance.retrieval.retriever import SearchHit
    from rag_appliance.services import build_services
    from rag_appliance.settings import load_settings

    docs, queries = _load(args.docs)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            server={"ui": False},
            generation={"enabled": False},
            search_log={"enabled": True},
        )
        services = await asyncio.to_thread(build_services, settings)
        await services.start()
        search_log = services.search_log
        assert search_log is not None
        app = create_app(settings, services)
        transport = httpx.ASGITransport(app=app)
        times: dict[str, list[float]] = {"off": [], "on": []}
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
                for start in range(0, len(docs), 64):
                    body = {"collection": "kb", "documents": docs[start : start + 64]}
                    (await c.post("/v1/index", json=body)).raise_for_status()
                for q in queries[:20]:  # warm-up
                    await c.post("/v1/search", json={"collection": "kb", "query": q})
                # Each query off then on (or on then off, in turn): drift hits both alike.
                for r in range(args.rounds):
                    for n, q in enumerate(queries[: args.per_round]):
                        for side in ("off", "on") if (r + n) % 2 == 0 else ("on", "off"):
                            services.search_log = search_log if side == "on" else None
                            body = {"collection": "kb", "query": q}
                            began = time.perf_counter()
                            resp = await c.post("/v1/search", json=body)
                            times[side].append(time.perf_counter() - began)
                            resp.raise_for_status()
            services.search_log = search_log
            hits = [
                SearchHit(d["id"], 0, "", 1.0 / (n + 1), {}, None) for n, d in enumerate(docs[:5])
            ]
            # What a search pays on the event loop: building the record and queueing it.
            began = time.perf_counter()
            for n in range(args.events):
                search_log.record_search(f"search-b{n}", "kb", queries[n % len(queries)], hits)
            record_s = time.perf_counter() - began
            # Feedback is written before its 200: one append in a worker thread each.
            began = time.perf_counter()
            for n in range(args.events):
                for label, h in (("positive", hits[1]), ("negative", hits[0])):
                    await search_log.write(
                        {"type": "feedback", "event_id": f"search-b{n}", "label": label,
                         "chunk_ids": [chunk_id(h)]}
                    )  # fmt: skip
            write_s = time.perf_counter() - began
            search_log.stop()
            size = sum(p.stat().st_size for p in log_dir(Path(tmp)).iterdir())
            began = time.perf_counter()
            result = await asyncio.to_thread(export_pairs, settings, services.store)
            export_s = time.perf_counter() - began
        finally:
            await services.stop()
    off, on = times["off"], times["on"]
    report = {
        "searches_per_side": len(off),
        "p50_ms": {"off": 1000 * _pct(off, 50), "on": 1000 * _pct(on, 50)},
        "p95_ms": {"off": 1000 * _pct(off, 95), "on": 1000 * _pct(on, 95)},
        "events": args.events,
        "log_bytes": size,
        "record_us_per_search": 1e6 * record_s / args.events,
        "feedback_write_ms": 1000 * write_s / (2 * args.events),
        "export_s": export_s,
        "export_events_per_s": result.events / export_s,
        "pairs": len(result.pairs),
    }
    report["ratio_p50_on_off"] = report["p50_ms"]["on"] / report["p50_ms"]["off"]
    report["ratio_p95_on_off"] = report["p95_ms"]["on"] / report["p95_ms"]["off"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--events", type=int, default=20_000)
    report = asyncio.run(run(parser.parse_args()))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
