"""Build fine-tuning pairs from Python's standard library that share nothing with a test set.

Each documented entry gives one pair: query = its docstring's one-line summary, positive = the
rest of the docstring with the qualified name in front (the text the index embeds with
contextual chunks on). Entries relevant to a query of the test set (by default
tests/data/beir-pystdlib), and summaries equal or close to one of its queries, are left out, so
that no test query and no test answer is ever trained on.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path

from build_beir_set import _norm
from build_pystdlib_set import Entry, document_of, load_entries, split_summary

SEED = 20_261_214
_WORD = re.compile(r"\w+")
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")


def test_exclusions(folder: Path) -> tuple[set[str], list[set[str]]]:
    """The test set's relevant document ids and its queries' word sets."""
    relevant: set[str] = set()
    for line in (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            relevant.add(line.split("\t")[1])
    queries = [
        set(_norm(json.loads(line)["text"]).split())
        for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return relevant, queries


def _close(words: set[str], queries: Sequence[set[str]], bar: float) -> bool:
    """Whether a summary's words overlap a test query's by Jaccard >= bar (or equal it)."""
    return any(len(words & q) / max(1, len(words | q)) >= bar for q in queries)


def build_pairs(
    entries: Iterable[Entry],
    test_folder: Path,
    *,
    n_pairs: int,
    seed: int = SEED,
    min_chars: int = 80,
    max_chars: int = 1000,
    min_words: int = 3,
    max_words: int = 16,
    jaccard: float = 0.6,
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Sampled pairs and the counts of what was left out and why."""
    relevant, test_queries = test_exclusions(test_folder)
    counts = {"entries": 0, "no_pair": 0, "test_document": 0, "close_to_test_query": 0}
    seen_queries: set[str] = set()
    seen_texts: set[str] = set()
    pairs: list[dict[str, str]] = []
    for entry in sorted(entries, key=lambda e: e.id):
        counts["entries"] += 1
        summary, rest = split_summary(entry.doc)
        query = summary.strip().rstrip(".").strip()
        text = document_of(summary, rest, min_chars, max_chars)
        words = _norm(query).split()
        bad = _SIGNATURE.match(query) or query.endswith(":") or "[" in query or "|" in query
        if text is None or bad or not min_words <= len(words) <= max_words:
            counts["no_pair"] += 1
            continue
        if entry.id in relevant or text in seen_texts:
            counts["test_document" if entry.id in relevant else "no_pair"] += 1
            continue
        if _close(set(words), test_queries, jaccard):
            counts["close_to_test_query"] += 1
            continue
        key = " ".join(words)
        if key in seen_queries:  # one pair per summary: duplicates would be false negatives
            counts["no_pair"] += 1
            continue
        seen_queries.add(key)
        seen_texts.add(text)
        pairs.append({"query": query, "positive": f"{entry.id}\n\n{text}"})
    rng = random.Random(seed)
    chosen = rng.sample(pairs, min(n_pairs, len(pairs)))
    counts["eligible"] = len(pairs)
    counts["written"] = len(chosen)
    return chosen, counts


def main(argv: Sequence[str] | None = None) -> int:
    """Write the pairs as JSONL to --out."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    parser.add_argument("--test", type=Path, default=Path("tests/data/beir-pystdlib"))
    parser.add_argument(
        "--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]), help="library"
    )
    parser.add_argument("--pairs", type=int, default=2000, help="most pairs written")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    pairs, counts = build_pairs(load_entries(args.stdlib), args.test, n_pairs=args.pairs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8"
    )
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
