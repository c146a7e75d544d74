"""Build fine-tuning pairs from Python docstrings that share nothing with a test set.

Each documented entry gives one pair: query = its docstring's one-line summary, positive = the
rest of the docstring with the qualified name in front (the text the index embeds with
contextual chunks on). The entries come from the standard library and, with --library, from
installed third-party packages (more, and more varied, pairs of the same kind). Entries
relevant to a query of the test set (by default tests/data/beir-pystdlib), texts equal to one of
those, and summaries equal or close to one of its queries are left out, so that no test
query and no test answer is ever trained on. With --no-own-name (as the test set does) a
summary that names its own entry is left out: the title alone would answer it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import sysconfig
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from build_beir_set import _norm
from build_pystdlib_set import (
    Entry,
    document_of,
    entries_of,
    find_modules,
    load_entries,
    split_summary,
)

SEED = 20_261_214
_WORD = re.compile(r"\w+")
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
# Third-party packages read with --library: general-purpose, documented in prose; their own
# tests and vendored copies (private `_vendor` folders are skipped anyway) are left out.
LIBRARY_EXCLUDE = ("tests", "test", "testing", "conftest", "benchmarks", "examples")


def library_entries(site: Path, packages: Sequence[str]) -> list[Entry]:
    """The documented public entries of installed packages, named `package.module...`."""
    out: dict[str, Entry] = {}
    for package in packages:
        root = site / package
        if not (root / "__init__.py").is_file():
            print(f"skipped {package}: not a package under {site}", file=sys.stderr)
            continue
        for module, path in find_modules(root, LIBRARY_EXCLUDE):
            name = f"{package}.{module}" if module else package
            for entry in entries_of(name, path, path.relative_to(site).as_posix()):
                out.setdefault(entry.id, entry)
    return sorted(out.values(), key=lambda e: e.id)


def test_exclusions(folder: Path) -> tuple[set[str], list[set[str]], set[str]]:
    """The test set's relevant document ids, its queries' word sets and those documents' texts."""
    relevant: set[str] = set()
    for line in (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            relevant.add(line.split("\t")[1])
    docs = [
        json.loads(line)
        for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    texts = {_norm(d["text"]) for d in docs if d["_id"] in relevant}
    queries = [
        set(_norm(json.loads(line)["text"]).split())
        for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return relevant, queries, texts


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
    own_name: bool = True,
    per_package: int | None = None,
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Sampled pairs and the counts of what was left out and why."""
    relevant, test_queries, test_texts = test_exclusions(test_folder)
    counts = {
        "entries": 0,
        "no_pair": 0,
        "own_name": 0,
        "test_document": 0,
        "close_to_test_query": 0,
    }
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
        if not own_name and {p.lower() for p in entry.id.split(".")} & set(words):
            counts["own_name"] += 1
            continue
        # By text too: a third-party copy of a standard-library docstring is a test answer.
        test_doc = entry.id in relevant or _norm(text) in test_texts
        if test_doc or text in seen_texts:
            counts["test_document" if test_doc else "no_pair"] += 1
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
    counts["eligible"] = len(pairs)
    if per_package is not None:
        # A few big packages (sympy, transformers) would otherwise make most of the pairs.
        shuffled, taken, pairs = rng.sample(pairs, len(pairs)), Counter[str](), []
        for pair in shuffled:
            package = pair["positive"].split(".", 1)[0].split("\n", 1)[0]
            taken[package] += 1
            if taken[package] <= per_package:
                pairs.append(pair)
        counts["per_package_cap"] = counts["eligible"] - len(pairs)
    chosen = rng.sample(pairs, min(n_pairs, len(pairs)))
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
    parser.add_argument(
        "--library", nargs="*", default=[], help="installed packages to read as well"
    )
    parser.add_argument(
        "--site", type=Path, default=Path(sysconfig.get_paths()["purelib"]), help="their folder"
    )
    parser.add_argument(
        "--no-own-name", action="store_true", help="leave out summaries naming their entry"
    )
    parser.add_argument("--per-package", type=int, help="most pairs from one top-level package")
    args = parser.parse_args(argv)
    entries = load_entries(args.stdlib) + library_entries(args.site, args.library)
    pairs, counts = build_pairs(
        entries,
        args.test,
        n_pairs=args.pairs,
        seed=args.seed,
        own_name=not args.no_own_name,
        per_package=args.per_package,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8"
    )
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
