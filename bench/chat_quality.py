"""Answers a user can trust, measured: citations, loops, follow-ups and a long conversation.

    python bench/chat_quality.py [--config PROFILE.yaml] [--limit N] [--json PATH]

Starts the appliance (default profile: the bundled SmolLM2-135M-Instruct on the CPU) with
`rag.default_collection` set, indexes tests/data/chat-facts (24 documents of invented facts:
no model knows them) through POST /v1/index, and asks through the official `openai` client
with model `rag` at temperature 0:

1. each conversation's first question, non-streamed and streamed: does the answer cite the
   document holding the fact, in `content` markers (`[n]` -> `sources[n-1]`) and in
   `message.annotations` (url_citation urls end with the document's id)?
2. every answer: the largest number of times one 4-word sequence occurs (a loop shows > 3);
3. each follow-up, which does not name the entity, after the first answer: did retrieval bring
   the right document (in `sources`) and does the answer cite it?
4. one 8-turn conversation whose earlier answers fill most of the context window: does the
   8th question still retrieve and cite its document, and what does `retrieval` report?
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from lib import ROOT
from lib.driver import log
from lib.results import command_line, write_json
from lib.servers import appliance_spec, ensure_ready, launch, stop_server

DATA = ROOT / "tests" / "data" / "chat-facts"
COLLECTION = "facts"
MARKER = re.compile(r"\[(\d+)\]")


def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The corpus and the conversations."""

    def read(name: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (DATA / name).read_text().splitlines()]

    return read("corpus.jsonl"), read("conversations.jsonl")


def max_4gram(text: str) -> int:
    """How often the most frequent 4-word sequence occurs."""
    words = re.findall(r"\w+", text.lower())
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    return max(grams.values(), default=0)


def cited_docs(content: str, sources: list[dict[str, Any]]) -> set[str]:
    """The documents the content's markers point at."""
    docs = set()
    for n in MARKER.findall(content):
        if 1 <= int(n) <= len(sources):
            docs.add(sources[int(n) - 1]["doc_id"])
    return docs


def annotated_docs(annotations: list[dict[str, Any]] | None) -> set[str]:
    """The documents the url_citation annotations point at (the url's last path segment)."""
    out = set()
    for a in annotations or []:
        url = (a.get("url_citation") or {}).get("url", "")
        out.add(httpx.URL(url).path.rsplit("/documents/", 1)[-1])
    return out


def ask(client: Any, messages: list[dict[str, str]], stream: bool) -> dict[str, Any]:
    """One answer as plain values: content, sources, annotations, retrieval, finish."""
    if not stream:
        r = client.chat.completions.create(model="rag", messages=messages, temperature=0)
        extra = r.model_extra or {}
        message = r.choices[0].message
        annotations = [a.model_dump() for a in (message.annotations or [])]
        return {
            "content": message.content or "",
            "sources": extra.get("sources") or [],
            "annotations": annotations,
            "retrieval": extra.get("retrieval"),
            "finish": r.choices[0].finish_reason,
        }
    parts: list[str] = []
    out: dict[str, Any] = {"sources": [], "annotations": [], "retrieval": None, "finish": None}
    stream_ = client.chat.completions.create(
        model="rag", messages=messages, temperature=0, stream=True
    )
    for chunk in stream_:
        extra = chunk.model_extra or {}
        out["sources"] = extra.get("sources") or out["sources"]
        out["retrieval"] = extra.get("retrieval") or out["retrieval"]
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            delta_extra = choice.delta.model_extra or {}
            out["annotations"] += delta_extra.get("annotations") or []
            out["finish"] = choice.finish_reason or out["finish"]
    out["content"] = "".join(parts)
    return out


def judge(answer: dict[str, Any], doc: str) -> dict[str, Any]:
    """What one answer shows."""
    return {
        "retrieved": doc in {s["doc_id"] for s in answer["sources"]},
        "cites_marker": doc in cited_docs(answer["content"], answer["sources"]),
        "cites_annotation": doc in annotated_docs(answer["annotations"]),
        "max_4gram": max_4gram(answer["content"]),
        "finish": answer["finish"],
        "content": answer["content"],
    }


def run(client: Any, limit: int | None) -> dict[str, Any]:
    """Every measurement, as rows and totals."""
    corpus, convs = load()
    convs = convs[:limit] if limit else convs
    rows: dict[str, list[dict[str, Any]]] = {"plain": [], "streamed": [], "follow-up": []}
    for conv in convs:
        first = [{"role": "user", "content": conv["question"]}]
        plain = ask(client, first, stream=False)
        rows["plain"].append(judge(plain, conv["doc_id"]) | {"doc": conv["doc_id"]})
        rows["streamed"].append(judge(ask(client, first, True), conv["doc_id"]))
        follow = [
            *first,
            {"role": "assistant", "content": plain["content"]},
            {"role": "user", "content": conv["follow_up"]},
        ]
        rows["follow-up"].append(judge(ask(client, follow, False), conv["doc_id"]))
        log(f"{conv['doc_id']}: {rows['plain'][-1]['content'][:80]!r}")
    totals = {
        kind: {
            "n": len(r),
            "retrieved": sum(x["retrieved"] for x in r) / len(r),
            "cites_marker": sum(x["cites_marker"] for x in r) / len(r),
            "cites_annotation": sum(x["cites_annotation"] for x in r) / len(r),
            "loops": sum(x["max_4gram"] > 3 for x in r),
            "worst_4gram": max(x["max_4gram"] for x in r),
        }
        for kind, r in rows.items()
    }
    long = long_conversation(client, corpus, convs)
    return {"totals": totals, "long_conversation": long, "rows": rows}


def long_conversation(
    client: Any, corpus: list[dict[str, Any]], convs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Seven earlier turns answered with whole documents (most of the window), then one more."""
    texts = {d["_id"]: d["text"] for d in corpus}
    messages: list[dict[str, str]] = []
    for conv in convs[:7]:
        messages += [
            {"role": "user", "content": conv["question"]},
            {"role": "assistant", "content": texts[conv["doc_id"]] + " [1]"},
        ]
    last = convs[-1]
    messages.append({"role": "user", "content": last["question"]})
    answer = ask(client, messages, stream=False)
    return judge(answer, last["doc_id"]) | {"retrieval": answer["retrieval"]}


def index(base: str, corpus: list[dict[str, Any]]) -> None:
    """The set's documents into the collection chat answers from."""
    docs = [{"id": d["_id"], "text": d["text"], "metadata": {"title": d["title"]}} for d in corpus]
    r = httpx.post(
        f"{base}/v1/index", json={"collection": COLLECTION, "documents": docs}, timeout=300
    )
    r.raise_for_status()


def main() -> int:
    """Start the appliance, measure, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a YAML profile (default: the CPU defaults)")
    parser.add_argument("--limit", type=int, help="only the first N conversations")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    import openai

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "RAG_DATA_DIR": tmp,
            "RAG_RAG__DEFAULT_COLLECTION": COLLECTION,
            "RAG_SERVER__UI": "false",
        }
        server = launch(appliance_spec("appliance-chat-quality", args.config), env=env)
        try:
            ensure_ready(server)
            base = f"http://127.0.0.1:{server.port}"
            index(base, load()[0])
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", timeout=300)
            started = time.perf_counter()
            result = run(client, args.limit)
            result["seconds"] = round(time.perf_counter() - started, 1)
        finally:
            stop_server(server.proc)
    for kind, t in result["totals"].items():
        print(
            f"{kind:10s} n={t['n']:2d} retrieved {t['retrieved']:.0%}  cites (markers) "
            f"{t['cites_marker']:.0%}  cites (annotations) {t['cites_annotation']:.0%}  "
            f"answers with a 4-gram > 3 times: {t['loops']} (worst {t['worst_4gram']})"
        )
    long = result["long_conversation"]
    print(
        f"8-turn conversation: retrieved {long['retrieved']}, cites {long['cites_marker']}"
        f"/{long['cites_annotation']}, retrieval {long['retrieval']}"
    )
    if args.json:
        write_json(args.json, {"command": command_line(), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
