"""Which search text finds the document a follow-up question is about: variants side by side.

    python bench/followups.py [--condense] [--json PATH]

Indexes tests/data/chat-facts (24 documents of invented facts, one conversation each) with the
default profile in this process, then, for every conversation, searches for the follow-up turn
with each variant and checks that the conversation's document comes first (hit@1) and is among
the passages chat hands the model (hit@5, rag.top_k). Three kinds of follow-up:

- `named-attribute`: the set's own follow-up ("Who was its last keeper?"), no entity named;
- `generic`: "What else does the document say about it?" and three like it (no content words);
- `topic switch`: the next conversation's first question (it names another entity), asked as a
  follow-up, so a variant that leans on history too much loses it.

Variants: the newest message alone (`literal`); earlier user turns with it (`history`, what
chat does: newest, earlier user turns, newest again; `rag.history_turns`); the previous
question plus a stand-in answer; and with `--condense`, the bundled generator rewriting the
conversation into one standalone question (the usual way, slow on CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lib.results import command_line, markdown_table, write_json

from rag_appliance.chat.history import retrieval_query
from rag_appliance.generation.base import Message, SamplingParams
from rag_appliance.ingest.pipeline import Document
from rag_appliance.retrieval.retriever import SearchOptions
from rag_appliance.services import Services, build_services
from rag_appliance.settings import Settings

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "chat-facts"
GENERIC = (
    "What else does the document say about it?",
    "Tell me more about that.",
    "Can you give more details?",
    "What other facts are there about it?",
)
CONDENSE = (
    "Rewrite the user's last question as one standalone question that names what it is "
    "about. Reply with the question only."
)
TOP_K = 5

Conversation = list[Message]
Variant = Callable[[Conversation], Awaitable[str]]


def conversations() -> list[dict[str, Any]]:
    """The set's conversations: document id, first question, answer word, follow-up."""
    lines = (DATA / "conversations.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def turns(conv: dict[str, Any], follow_up: str) -> Conversation:
    """A two-turn conversation: the first question, a short answer, then the follow-up."""
    return [
        Message("user", conv["question"]),
        Message("assistant", f"{conv['answer']} [1]."),
        Message("user", follow_up),
    ]


def variants(services: Services, condense: bool) -> dict[str, Variant]:
    """Each way of turning a conversation into search text."""

    async def literal(c: Conversation) -> str:
        return c[-1].content

    async def history(c: Conversation) -> str:
        return retrieval_query(c, services.settings.rag.history_turns)

    async def previous(c: Conversation) -> str:
        return "\n".join(m.content for m in c)

    out: dict[str, Variant] = {
        "literal (newest message)": literal,
        "history (chat's default)": history,
        "previous question + answer + newest": previous,
    }
    if condense:
        out["condensed by the generator"] = lambda c: condensed(services, c)
    return out


async def condensed(services: Services, c: Conversation) -> str:
    """The generator's standalone rewrite of the conversation (greedy, 48 tokens)."""
    gen = services.require_chat().generator
    transcript = "\n".join(f"{m.role}: {m.content}" for m in c)
    prompt = gen.chat_prompt([Message("system", CONDENSE), Message("user", transcript)])
    parts = []
    async for delta in gen.stream(
        prompt, SamplingParams(max_tokens=48, temperature=0.0, top_p=1.0), "fu"
    ):
        parts.append(delta.text)
    return "".join(parts).strip() or c[-1].content


async def run(condense: bool) -> dict[str, Any]:
    """Index the set, then score every variant on every kind of follow-up."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), generation={"enabled": condense}, rag={"top_k": TOP_K}
        )
        services = build_services(settings)
        await services.start()
        try:
            corpus = [json.loads(x) for x in (DATA / "corpus.jsonl").read_text().splitlines()]
            docs = [Document(d["text"], d["_id"], {"title": d["title"]}) for d in corpus]
            await services.require_pipeline().index("facts", docs)
            return await score(services, variants(services, condense))
        finally:
            await services.stop()


async def score(services: Services, table: dict[str, Variant]) -> dict[str, Any]:
    """hit@1 / hit@5 per variant and kind of follow-up."""
    convs = conversations()
    kinds: dict[str, list[tuple[Conversation, str]]] = {
        "named-attribute": [(turns(c, c["follow_up"]), c["doc_id"]) for c in convs],
        "generic": [
            (turns(c, GENERIC[i % len(GENERIC)]), c["doc_id"]) for i, c in enumerate(convs)
        ],
        "topic switch": [
            (
                turns(c, convs[(i + 1) % len(convs)]["question"]),
                convs[(i + 1) % len(convs)]["doc_id"],
            )
            for i, c in enumerate(convs)
        ],
    }
    results: dict[str, Any] = {}
    for name, variant in table.items():
        started = time.perf_counter()
        row: dict[str, Any] = {}
        for kind, cases in kinds.items():
            at1 = at5 = 0
            for conv, doc in cases:
                query = await variant(conv)
                hits = await services.require_retriever().search(
                    "facts", query, TOP_K, options=SearchOptions(group_by_document=True)
                )
                ranked = [h.doc_id for h in hits]
                at1 += bool(ranked) and ranked[0] == doc
                at5 += doc in ranked
            row[kind] = {"hit@1": at1 / len(cases), "hit@5": at5 / len(cases), "n": len(cases)}
        row["seconds"] = round(time.perf_counter() - started, 2)
        results[name] = row
    return results


def main() -> int:
    """Run and print the table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--condense", action="store_true", help="also the generator's rewrite")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    results = asyncio.run(run(args.condense))
    kinds = ("named-attribute", "generic", "topic switch")
    rows = [
        [name, *(f"{r[k]['hit@1']:.0%} / {r[k]['hit@5']:.0%}" for k in kinds), str(r["seconds"])]
        for name, r in results.items()
    ]
    columns = ["variant", *(f"{k} hit@1 / hit@5" for k in kinds), "seconds"]
    print(markdown_table(columns, "lrrrr", rows))
    if args.json:
        write_json(args.json, {"command": command_line(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
