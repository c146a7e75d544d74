"""Interactive /v1/embeddings latency while a Batch API job runs, against the same server idle.

    python bench/batch_latency.py [--lines 10000] [--rounds 4] [--requests 20] [--texts 8]
                                  [--rate 5] [--background-tokens N] [--finish]

In this process: the real embedding model (CPU profile, generation off), the FastAPI app over
httpx's ASGI transport (no sockets), data_dir in a temporary folder. A `--lines`-line
embeddings batch file is uploaded (POST /v1/files). Then `--rounds` times: an idle phase, and a
busy phase while a batch over that file runs (POST /v1/batches; cancelled after the phase).
Each phase sends `--requests` interactive embeddings calls of `--texts` short texts each, at
random (Poisson) times at `--rate` calls per second (interactive users, not a closed loop). The
phases alternate so that the machine's drift hits both; the ratio is the busy median over the
idle median of all calls (acceptance: <= 2). The batch's lines per second during the busy
phases is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from lib.machine import cpu_info, offline, quiet_transformers  # noqa: E402
from lib.results import command_line, dated_path, ratio, verdict, write_json  # noqa: E402


def batch_file(lines: int) -> bytes:
    """`lines` embeddings requests of one short text each."""
    rows = (
        {
            "custom_id": f"line-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"input": f"Background document {i} about ferry timetables and harbours."},
        }
        for i in range(lines)
    )
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


async def latencies(client: Any, args: argparse.Namespace, tag: str) -> list[float]:
    """Seconds per interactive call, sent at random (Poisson) times at --rate calls/s."""
    rng = random.Random(f"{args.seed}-{tag}")

    async def one(r: int) -> float:
        inputs = [f"Interactive question {tag} {r}.{t}: ferry times?" for t in range(args.texts)]
        started = time.perf_counter()
        response = await client.post("/v1/embeddings", json={"input": inputs})
        assert response.status_code == 200, response.text
        return time.perf_counter() - started

    calls = []
    for r in range(args.requests):
        calls.append(asyncio.create_task(one(r)))
        await asyncio.sleep(rng.expovariate(args.rate))
    return list(await asyncio.gather(*calls))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from rag_appliance.app import create_app
    from rag_appliance.services import build_services
    from rag_appliance.settings import load_settings

    tokens = args.background_tokens
    background = {"background_batch_tokens": tokens} if tokens else {}
    idle: list[float] = []
    busy: list[float] = []
    rates: list[float] = []
    finals: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            server={"ui": False},
            generation={"enabled": False},
            batch={"max_lines": max(args.lines, 1), **background},
        ).model_copy(update={"data_dir": Path(tmp)})
        services = await asyncio.to_thread(build_services, settings)
        app = create_app(settings, services)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client,
        ):

            async def state(batch_id: str) -> dict[str, Any]:
                return dict((await client.get(f"/v1/batches/{batch_id}")).json())

            async def until(batch_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
                """Poll the batch (an HTTP client has no event to wait on)."""
                while True:
                    current = await state(batch_id)
                    if current["status"] in statuses:
                        return current
                    await asyncio.sleep(0.1)

            await latencies(client, argparse.Namespace(**{**vars(args), "requests": 5}), "warm")
            upload = await client.post(
                "/v1/files",
                files={"file": ("bench.jsonl", io.BytesIO(batch_file(args.lines)))},
                data={"purpose": "batch"},
            )
            file_id = upload.json()["id"]
            # Idle and busy phases alternate, so the machine's drift hits both alike.
            for r in range(args.rounds):
                idle += await latencies(client, args, f"idle{r}")
                created = await client.post(
                    "/v1/batches",
                    json={
                        "input_file_id": file_id,
                        "endpoint": "/v1/embeddings",
                        "completion_window": "24h",
                    },
                )
                batch_id = created.json()["id"]
                await until(batch_id, ("in_progress", "completed", "failed"))
                await asyncio.sleep(0.5)  # the lane is full before the busy phase starts
                first = await state(batch_id)
                started = time.perf_counter()
                busy += await latencies(client, args, f"busy{r}")
                window_s = time.perf_counter() - started
                last = await state(batch_id)
                if last["status"] != "in_progress":
                    print("warning: the batch finished inside the phase; use more --lines")
                done = last["request_counts"]["completed"] - first["request_counts"]["completed"]
                rates.append(done / window_s)
                if not (args.finish and r == args.rounds - 1):
                    await client.post(f"/v1/batches/{batch_id}/cancel")
                final = await until(batch_id, ("completed", "failed", "cancelled"))
                finals.append({"status": final["status"], **final["request_counts"]})
            idle += await latencies(client, args, "idle-last")
    idle_median, busy_median = statistics.median(idle), statistics.median(busy)
    return {
        "command": command_line(),
        "machine": cpu_info(),
        "lines": args.lines,
        "background_batch_tokens": settings.batch.background_batch_tokens,
        "rounds": args.rounds,
        "requests_per_phase": args.requests,
        "texts_per_request": args.texts,
        "rate_per_s": args.rate,
        "idle_median_s": round(idle_median, 4),
        "idle_p95_s": round(statistics.quantiles(idle, n=20)[-1], 4),
        "busy_median_s": round(busy_median, 4),
        "busy_p95_s": round(statistics.quantiles(busy, n=20)[-1], 4),
        "ratio_busy_to_idle": ratio(busy_median, idle_median),
        "batch_lines_per_s_during_busy": round(statistics.median(rates), 1),
        "batches": finals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20, help="interactive calls per phase")
    parser.add_argument("--rounds", type=int, default=4, help="idle/busy phase pairs")
    parser.add_argument("--texts", type=int, default=8)
    parser.add_argument("--rate", type=float, default=5.0, help="interactive calls per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--background-tokens", type=int, help="batch.background_batch_tokens (default: settings)"
    )
    parser.add_argument("--finish", action="store_true", help="wait for the batch to complete")
    parser.add_argument("--out", help="results JSON (default bench/results/batch-latency-...)")
    args = parser.parse_args()
    offline()
    quiet_transformers()
    result = asyncio.run(run(args))
    r = result["ratio_busy_to_idle"]
    print(json.dumps(result, indent=2))
    print(
        f"interactive median: idle {result['idle_median_s']} s, during a batch "
        f"{result['busy_median_s']} s -> ratio {r} ({verdict(None if r is None else 2 / r, 1.0)}"
        f" against <= 2x); the batch ran {result['batch_lines_per_s_during_busy']} lines/s"
    )
    path = dated_path("batch-latency", "cpu", dt.datetime.now(), args.out)
    write_json(path, result)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
