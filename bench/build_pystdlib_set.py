"""Build a BEIR-format retrieval set from the docstrings of Python's standard library.

Query = a docstring's first sentence (its authors' one-line summary); document = the rest of
that docstring; title = the qualified name. Read from the source files with `ast`, nothing is
imported.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from build_beir_set import BeirSet, _norm, _tokens_and_lengths, bm25_baseline, write_set

# Left out: tests, tools and demos shipped with the library, the 2to3 fixers, third-party
# packages, and tkinter and turtle, whose hundreds of widget docstrings repeat one template
# (option lists, "Example (for a Turtle instance named turtle)").
DEFAULT_EXCLUDE = (
    "test",
    "idlelib",
    "lib2to3",
    "turtledemo",
    "ensurepip",
    "site-packages",
    "dist-packages",
    "pydoc_data",
    "tkinter",
    "turtle",
    "this",
    "antigravity",
)
SEED = 20_261_202
# A sentence ends at . ! or ? before a capital letter or an opening quote or bracket, so that
# "e.g. the" and "os.path.join" do not end one.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(`*])")
# An old-style signature line, "dumps(obj, protocol=None) -> bytes", is not a summary.
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Entry:
    """One documented module, class or function: qualified name, kind, source, docstring."""

    id: str
    kind: str
    path: str
    line: int
    doc: str


def find_modules(root: Path, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[tuple[str, Path]]:
    """(dotted module name, file) for each public .py module under root, sorted by name."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        # A private module or package ("_pydecimal", "email._parseaddr") is no public API.
        if not parts or any(p.startswith("_") or "-" in p for p in parts):
            continue
        if parts[0] in exclude:
            continue
        found.setdefault(".".join(parts), path)
    return sorted(found.items())


def _definitions(
    body: Sequence[ast.stmt],
) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    """The functions and classes defined in a block, also under `if` and `try` at that level."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node
        elif isinstance(node, ast.If):
            yield from _definitions(node.body)
            yield from _definitions(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse):
                yield from _definitions(block)


def entries_of(module: str, path: Path, rel: str) -> Iterator[Entry]:
    """The module and its public classes, functions and methods (two classes deep) with a doc."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield Entry(module, "module", rel, 1, doc)
    seen: set[str] = set()

    def walk(body: Sequence[ast.stmt], prefix: str, depth: int) -> Iterator[Entry]:
        for node in _definitions(body):
            name = f"{prefix}.{node.name}"
            # Private and special names (`__init__`) are left out; of two definitions of one
            # name (an `if`/`else` per platform) the first is read.
            if node.name.startswith("_") or name in seen:
                continue
            seen.add(name)
            doc = ast.get_docstring(node)
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            if doc:
                yield Entry(name, kind, rel, node.lineno, doc)
            if isinstance(node, ast.ClassDef) and depth < 2:
                yield from walk(node.body, name, depth + 1)

    yield from walk(tree.body, module, 0)


def load_entries(root: Path, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[Entry]:
    """Every documented public entry of the library under root, sorted by qualified name."""
    out: dict[str, Entry] = {}
    for module, path in find_modules(root, exclude):
        for entry in entries_of(module, path, path.relative_to(root).as_posix()):
            out.setdefault(entry.id, entry)
    return sorted(out.values(), key=lambda e: e.id)


def paragraphs(doc: str) -> list[str]:
    """The docstring's paragraphs, each on one line; doctest examples (`>>>` blocks) dropped."""
    kept = []
    for block in re.split(r"\n\s*\n", doc):
        lines = block.strip().splitlines()
        if not lines or any(line.lstrip().startswith(">>>") for line in lines):
            continue
        kept.append(" ".join(block.split()))
    return kept


def split_summary(doc: str) -> tuple[str, str]:
    """(first sentence, the rest of the docstring as one line of text)."""
    paras = paragraphs(doc)
    if not paras:
        return "", ""
    first, *rest = _SENTENCE.split(paras[0], maxsplit=1)
    return first, " ".join([*rest, *paras[1:]])


def query_of(entry: Entry, summary: str, min_words: int, max_words: int) -> str | None:
    """The summary as a query (no final period), or None if it cannot serve as one."""
    text = summary.strip().rstrip(".").strip()
    words = [w.lower() for w in _WORD.findall(text)]
    if not min_words <= len(words) <= max_words:
        return None
    # A signature, a command's syntax (pdb's "l(ist) [first [,last] | .]"), a lead-in to a list
    # ("Usage:") or a summary that names the entry itself (then the title alone, `json.dumps`,
    # would answer it) is no natural question.
    if _SIGNATURE.match(text) or text.endswith(":") or any(c in text for c in ("[", "|", ">>>")):
        return None
    own = {part.lower() for part in entry.id.split(".")}
    return None if own & set(words) else text


def document_of(summary: str, rest: str, min_chars: int, max_chars: int) -> str | None:
    """The rest of the docstring less sentences that contain the summary; None if short."""
    key = _norm(summary)
    # A sentence that repeats the query word for word would let word overlap win trivially.
    kept = [s for s in _SENTENCE.split(rest) if not key or key not in _norm(s)]
    text = " ".join(kept).strip()
    if len(text) > max_chars:
        cut = text[:max_chars]
        end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
        # Cut at the last full sentence when one ends in the second half, else at a word.
        text = cut[: end + 1] if end >= max_chars // 2 else cut.rsplit(" ", 1)[0]
    return text if len(text) >= min_chars else None


def build_set(
    entries: Iterable[Entry],
    *,
    n_queries: int,
    n_docs: int,
    seed: int = SEED,
    min_chars: int = 150,
    max_chars: int = 1000,
    min_query_words: int = 3,
    max_query_words: int = 16,
) -> BeirSet:
    """Pick n_queries summaries and a corpus of n_docs docstrings (theirs plus distractors)."""
    texts: dict[str, str] = {}
    owner_of_text: dict[str, str] = {}
    alias: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    wording: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: e.id):
        summary, rest = split_summary(entry.doc)
        text = document_of(summary, rest, min_chars, max_chars)
        if text is None:
            continue
        # One text under two names (a method copied into a subclass) is kept once.
        first = owner_of_text.setdefault(text, entry.id)
        alias[entry.id] = first
        if first == entry.id:
            texts[entry.id] = text
        query = query_of(entry, summary, min_query_words, max_query_words)
        if query is None:
            continue
        # One query per distinct summary; every entry that shares it is relevant to it.
        key = _norm(query)
        relevant.setdefault(key, set()).add(first)
        wording.setdefault(key, query)
    rng = random.Random(seed)
    keys = sorted(relevant)
    chosen = sorted(rng.sample(keys, min(n_queries, len(keys))))
    needed = sorted({d for k in chosen for d in relevant[k]})
    rest_ids = sorted(set(texts) - set(needed))
    extra = rng.sample(rest_ids, max(0, min(n_docs - len(needed), len(rest_ids))))
    doc_ids = sorted(set(needed) | set(extra))
    corpus = [{"_id": d, "title": d, "text": texts[d]} for d in doc_ids]
    order = list(chosen)
    rng.shuffle(order)  # query ids in random order, so that q0001.. do not run alphabetically
    queries = [{"_id": f"q{i + 1:04d}", "text": wording[k]} for i, k in enumerate(order)]
    qrels = [
        (q["_id"], d, 1) for q, k in zip(queries, order, strict=True) for d in sorted(relevant[k])
    ]
    return BeirSet(corpus, queries, qrels)


def overlap(folder: Path) -> dict[str, float]:
    """How much of each query the relevant document already says, in BM25's terms.

    For each judged (query, document) pair: the fraction of the query's content terms (the
    product's English BM25 analysis: lower-cased, stop words dropped, stemmed) that occur in the
    document, with and without its title; averaged over pairs, plus the share of pairs where
    every term, or none, occurs.
    """
    import qdrant_edge as qe

    from rag_appliance.retrieval.evaluation import load_beir

    data = load_beir(folder)
    pairs = [(q, d) for q, docs in data.qrels.items() if q in data.queries for d in docs]
    model = qe.Bm25(qe.Bm25Config(language="english"))
    out: dict[str, float] = {"pairs": float(len(pairs))}
    for label, source in (("text", data.bodies), ("title+text", data.corpus)):
        counts, _ = _tokens_and_lengths([source[d] for _, d in pairs])
        fractions = []
        for (q, _), terms in zip(pairs, counts, strict=True):
            wanted = set(model.embed_query(data.queries[q]).indices)
            if wanted:
                fractions.append(len(wanted & set(terms)) / len(wanted))
        n = len(fractions) or 1
        out[f"{label} mean"] = round(sum(fractions) / n, 4)
        out[f"{label} all terms"] = round(sum(f == 1.0 for f in fractions) / n, 4)
        out[f"{label} no term"] = round(sum(f == 0.0 for f in fractions) / n, 4)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Build the set into --out, or score a BEIR folder (--bm25) or measure its overlap."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="folder to write the BEIR set into")
    parser.add_argument(
        "--stdlib",
        type=Path,
        default=Path(sysconfig.get_paths()["stdlib"]),
        help="the standard library folder to read (default: this Python's)",
    )
    parser.add_argument("--queries", type=int, default=400, help="number of queries")
    parser.add_argument("--docs", type=int, default=1500, help="number of documents")
    parser.add_argument("--max-chars", type=int, default=1000, help="cap on a document's text")
    parser.add_argument("--min-chars", type=int, default=150, help="shortest document kept")
    parser.add_argument("--max-query-words", type=int, default=16, help="longest query kept")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--bm25", type=Path, help="instead: score this BEIR folder with BM25")
    parser.add_argument("--k", type=int, default=10, help="cut-off of the BM25 metrics")
    parser.add_argument("--overlap", type=Path, help="instead: query/document word overlap")
    args = parser.parse_args(argv)
    if args.bm25 is not None:
        print(json.dumps({"bm25": bm25_baseline(args.bm25, args.k)}))
        return 0
    if args.overlap is not None:
        print(json.dumps({"overlap": overlap(args.overlap)}))
        return 0
    if args.out is None:
        parser.error("--out, --bm25 or --overlap is required")
    if not args.stdlib.is_dir():
        parser.error(f"no such folder: {args.stdlib}")
    entries = load_entries(args.stdlib)
    beir = build_set(
        entries,
        n_queries=args.queries,
        n_docs=args.docs,
        seed=args.seed,
        min_chars=args.min_chars,
        max_chars=args.max_chars,
        max_query_words=args.max_query_words,
    )
    write_set(beir, args.out)
    by_id = {e.id: e for e in entries}
    rows = [
        f"{d['_id']}\t{by_id[d['_id']].kind}\t{by_id[d['_id']].path}:{by_id[d['_id']].line}"
        for d in beir.corpus
    ]
    (args.out / "sources.tsv").write_text(
        "corpus-id\tkind\tsource\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    print(
        f"{len(entries)} documented entries read from {args.stdlib}; wrote "
        f"{len(beir.corpus)} documents, {len(beir.queries)} queries, {len(beir.qrels)} "
        f"judgements to {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
