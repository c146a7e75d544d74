"""Chat latency and throughput: time to first token, tokens/s, and the retrieval overhead.

    python bench/chat.py [--requests 8] [--max-tokens 96] [--concurrency 1,4]

Starts the appliance with the generator enabled (the bundled SmolLM2-135M-Instruct on the
CPU profile), indexes a small corpus, then streams chat completions with and without
retrieval, one at a time and concurrently. Retrieval overhead is the server's own
`x-prepare-ms` (request -> generation start) with RAG minus without, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import httpx
from lib import ROOT
from lib.results import dated_path, write_json
from lib.servers import appliance_spec, ensure_ready, launch, stop_server

QUESTIONS = [
    "How do I keep sourdough starter alive?",
    "What does the lighthouse keeper feed every morning?",
    "Explain what an event loop does.",
    "Why does boiled meat stay grey?",
]
DOCS = [
    "A sourdough starter needs flour and water every day; keep it at room temperature.",
    "The lighthouse keeper on Varn Island feeds eleven goats every morning.",
    "An event loop runs coroutines one at a time, switching whenever one awaits.",
    "Meat browns through the Maillard reaction, which needs temperatures above 140 C.",
]


@dataclass(frozen=True)
class Sample:
    """One streamed completion as the client saw it."""

    ttft_s: float
    total_s: float
    tokens: int
    prepare_ms: float


async def one(client: httpx.AsyncClient, question: str, rag: bool, max_tokens: int) -> Sample:
    """Stream one completion and time it."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if rag:
        body["rag"] = {"collection": "bench", "top_k": 3}
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {await response.aread()!r}")
        prepare_ms = float(response.headers.get("x-prepare-ms", "nan"))
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content") and first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    return Sample((first or end) - started, end - started, tokens, prepare_ms)


async def scenario(
    client: httpx.AsyncClient, rag: bool, concurrency: int, requests: int, max_tokens: int
) -> dict[str, float]:
    """`requests` completions, `concurrency` at a time; summary figures."""
    queue = list(range(requests))
    samples: list[Sample] = []

    async def worker() -> None:
        while queue:
            i = queue.pop()
            samples.append(await one(client, QUESTIONS[i % len(QUESTIONS)], rag, max_tokens))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    decode = [
        (s.tokens - 1) / (s.total_s - s.ttft_s)
        for s in samples
        if s.tokens > 1 and s.total_s > s.ttft_s
    ]
    return {
        "ttft_p50_ms": 1000 * statistics.median(s.ttft_s for s in samples),
        "prepare_p50_ms": statistics.median(s.prepare_ms for s in samples),
        "tokens_per_s_per_request": statistics.median(decode) if decode else 0.0,
        "tokens_per_s_total": sum(s.tokens for s in samples) / wall,
        "completion_tokens_mean": statistics.mean(s.tokens for s in samples),
    }


async def drive(base: str, args: argparse.Namespace) -> dict[str, Any]:
    """Index the corpus, warm up, then run every scenario."""
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(DOCS)]
        r = await client.post("/v1/index", json={"collection": "bench", "documents": docs})
        r.raise_for_status()
        await one(client, QUESTIONS[0], True, 8)  # warm-up
        results: dict[str, Any] = {}
        for concurrency in args.concurrency:
            for rag in (False, True):
                key = f"{'rag' if rag else 'plain'}-c{concurrency}"
                results[key] = await scenario(
                    client, rag, concurrency, args.requests, args.max_tokens
                )
                print(key, results[key], file=sys.stderr)
        return results


def main() -> None:
    """Start the appliance with chat, measure, print a table, save raw figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="completions per scenario")
    parser.add_argument("--max-tokens", type=int, default=96, help="max_tokens per completion")
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4]
    )
    parser.add_argument("--config", help="YAML profile for the appliance")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RAG_GENERATION__ENABLED"] = "true"
        os.environ["RAG_DATA_DIR"] = tmp
        os.environ.setdefault(
            "RAG_GENERATION__MODEL_CACHE_DIR", str(ROOT / "test-output" / "models")
        )
        server = launch(appliance_spec("appliance-chat", args.config))
        try:
            ensure_ready(server)
            results = asyncio.run(drive(server.base, args))
        finally:
            stop_server(server.proc)
    command = "python " + shlex.join(["bench/chat.py", *sys.argv[1:]])
    print(
        f"Command: `{command}`; {args.requests} streamed completions per row, "
        f"max_tokens={args.max_tokens}, temperature 0"
    )
    print(
        "| scenario | TTFT p50 ms | request->generation ms (server) | tokens/s per request "
        "| tokens/s total |"
    )
    print("|---|---:|---:|---:|---:|")
    for key, row in results.items():
        print(
            f"| {key} | {row['ttft_p50_ms']:.0f} | {row['prepare_p50_ms']:.1f} | "
            f"{row['tokens_per_s_per_request']:.1f} | {row['tokens_per_s_total']:.1f} |"
        )
    for concurrency in args.concurrency:
        overhead = (
            results[f"rag-c{concurrency}"]["prepare_p50_ms"]
            - results[f"plain-c{concurrency}"]["prepare_p50_ms"]
        )
        print(f"retrieval overhead at concurrency {concurrency}: {overhead:.1f} ms")
    out = dated_path("chat", "cpu", dt.datetime.now(), keep_earlier=False)
    write_json(out, {"command": command, "results": results})
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
