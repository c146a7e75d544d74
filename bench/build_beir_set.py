"""Build a BEIR-format retrieval set from this machine's English man pages: NAME line = query."""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Sections of the manual read: commands, system calls, library calls, file formats,
# overviews and admin commands (4 and 6, devices and games, hold too few pages here).
SECTIONS = ("1", "2", "3", "5", "7", "8")
# The Google Cloud SDK ships ~16,600 generated pages (`gcloud-...`) that would swamp the set with
# one template; left out by default.
DEFAULT_EXCLUDE = ("gcloud",)
SEED = 20_260_510
# A very long line so that groff neither wraps nor hyphenates: one paragraph per output line.
GROFF = ("groff", "-k", "-Tutf8", "-mandoc", "-rLL=3000n", "-rHY=0", "-P-cbou")
# groff's typographic characters, folded back to ASCII so that "apt-get" stays one word.
_FOLD = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2212": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u00a0": " ",
        "\u00ad": None,
    }
)
# "name1, name2 - what it does" (man) or "name — what it does" (mdoc).
_NAME_LINE = re.compile(r"^(?P<names>.+?)\s+(?:-{1,2}|\u2013|\u2014)\s+(?P<summary>.+)$")
_HEADING = re.compile(r"^[A-Z][A-Z0-9 /&,()-]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[\w:.+-]+")


@dataclass(frozen=True)
class Page:
    """One rendered man page: its id (file name), names, NAME summary and DESCRIPTION text."""

    id: str
    section: str
    names: tuple[str, ...]
    summary: str
    description: str


@dataclass(frozen=True)
class BeirSet:
    """Rows of corpus.jsonl, queries.jsonl and qrels/test.tsv, in the order written."""

    corpus: list[dict[str, str]]
    queries: list[dict[str, str]]
    qrels: list[tuple[str, str, int]]


def system_man_roots() -> list[Path]:
    """The system-wide manual folders, as man-db's `manpath --global` lists them."""
    try:
        done = subprocess.run(
            ["manpath", "--global"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [Path(p) for p in done.stdout.strip().split(":") if p and Path(p).is_dir()]


def find_pages(roots: Sequence[Path], exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[Path]:
    """The English pages of SECTIONS under roots, sorted; links and excluded prefixes left out."""
    paths: dict[str, Path] = {}
    for root in roots:
        for section in SECTIONS:
            folder = root / f"man{section}"
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                # A link is another name of a page already read under its own file.
                if path.is_symlink() or not path.is_file() or path.name.startswith(tuple(exclude)):
                    continue
                # A page in two roots is read from the first, as man would show it.
                paths.setdefault(page_id(path), path)
    return sorted(paths.values(), key=page_id)


def page_id(path: Path) -> str:
    """The page's file name without the compression suffix: 'read.2', 'File::Spec.3perl'."""
    return path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name


def read_roff(path: Path) -> str | None:
    """The page's roff source, or None for a `.so` redirect to another page."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    return None if text.lstrip().startswith(".so ") else text


def render(roff: str) -> str:
    """The page as plain text by groff (no bold, underline or colour), '' if groff fails."""
    done = subprocess.run(GROFF, input=roff.encode(), capture_output=True, timeout=60, check=False)
    return done.stdout.decode("utf-8", errors="replace") if done.returncode == 0 else ""


def sections_of(rendered: str) -> dict[str, list[str]]:
    """Heading -> the stripped lines of its body (one line per paragraph: no wrapping)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    lines = [line for line in rendered.translate(_FOLD).splitlines() if line.strip()]
    # Rendered continuously, a page has one running header (first line) and one footer (last).
    for line in lines[1:-1]:
        if not line[0].isspace():
            head = line.strip()
            current = found.setdefault(head, []) if _HEADING.match(head) else None
        elif current is not None:
            current.append(line.strip())
    return found


def parse_rendered(pid: str, rendered: str) -> Page | None:
    """The Page of a rendered man page, or None without a NAME line or a DESCRIPTION."""
    parts = sections_of(rendered)
    # A page for several programs has a NAME line for each (hostname, domainname, ...): the
    # first is the page's own.
    match = _NAME_LINE.match(" ".join((parts.get("NAME") or [""])[0].split()))
    description = " ".join(" ".join(parts.get("DESCRIPTION", [])).split())
    if match is None or not description:
        return None
    names = tuple(n.strip() for n in match["names"].split(",") if n.strip())
    summary = match["summary"].strip().rstrip(".").strip()
    section = pid.rsplit(".", 1)[-1] if "." in pid else ""
    return Page(pid, section, names, summary, description)


def _norm(text: str) -> str:
    """Lowercase words only, for comparing a summary with a sentence."""
    return " ".join(re.findall(r"\w+", text.lower()))


def document_text(page: Page, min_chars: int, max_chars: int) -> str | None:
    """DESCRIPTION less the sentences that restate the summary, cut to max_chars; None if short."""
    summary = _norm(page.summary)
    # A sentence that contains the query word for word would let word overlap win trivially.
    kept = [s for s in _SENTENCE_END.split(page.description) if summary not in _norm(s)]
    text = " ".join(kept).strip()
    if len(text) > max_chars:
        cut = text[:max_chars]
        end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
        # Cut at the last full sentence when one ends in the second half, else at a word.
        text = cut[: end + 1] if end >= max_chars // 2 else cut.rsplit(" ", 1)[0]
    return text if len(text) >= min_chars else None


def names_in_query(page: Page) -> bool:
    """Whether the summary names the page itself (then the title alone would answer it)."""
    words = {w.lower().strip(".") for w in _WORD.findall(page.summary)}
    return any(n.lower() in words for n in page.names)


def build_set(
    pages: Iterable[Page],
    *,
    n_queries: int,
    n_docs: int,
    seed: int = SEED,
    min_chars: int = 300,
    max_chars: int = 1000,
    min_query_words: int = 3,
) -> BeirSet:
    """Pick n_queries summaries and a corpus of n_docs descriptions (theirs plus distractors)."""
    texts: dict[str, str] = {}
    titles: dict[str, str] = {}
    owner_of_text: dict[str, str] = {}
    alias: dict[str, str] = {}
    eligible: list[Page] = []
    for page in sorted(pages, key=lambda p: p.id):
        text = document_text(page, min_chars, max_chars)
        if text is None:
            continue
        # Exact duplicate documents (one text under two pages) are kept once, under the first id.
        first = owner_of_text.setdefault(text, page.id)
        alias[page.id] = first
        if first == page.id:
            texts[page.id] = text
            titles[page.id] = f"{page.names[0]}({page.section})" if page.section else page.names[0]
        eligible.append(page)
    # One query per distinct summary; every page that shares it is relevant to it.
    relevant: dict[str, set[str]] = {}
    wording: dict[str, str] = {}
    for page in eligible:
        key = _norm(page.summary)
        if len(key.split()) < min_query_words or names_in_query(page):
            continue
        relevant.setdefault(key, set()).add(alias[page.id])
        wording.setdefault(key, page.summary)
    rng = random.Random(seed)
    keys = sorted(relevant)
    chosen = sorted(rng.sample(keys, min(n_queries, len(keys))))
    needed = sorted({d for k in chosen for d in relevant[k]})
    rest = sorted(set(texts) - set(needed))
    extra = rng.sample(rest, max(0, min(n_docs - len(needed), len(rest))))
    doc_ids = sorted(set(needed) | set(extra))
    corpus = [{"_id": d, "title": titles[d], "text": texts[d]} for d in doc_ids]
    order = list(chosen)
    rng.shuffle(order)  # query ids in random order, so that q0001.. do not run alphabetically
    queries = [{"_id": f"q{i + 1:04d}", "text": wording[k]} for i, k in enumerate(order)]
    qrels = [
        (q["_id"], d, 1) for q, k in zip(queries, order, strict=True) for d in sorted(relevant[k])
    ]
    return BeirSet(corpus, queries, qrels)


def write_set(beir: BeirSet, out: Path) -> None:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv under out."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)

    def jsonl(rows: list[dict[str, str]]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    (out / "corpus.jsonl").write_text(jsonl(beir.corpus), encoding="utf-8")
    (out / "queries.jsonl").write_text(jsonl(beir.queries), encoding="utf-8")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in beir.qrels]
    (out / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_pages(paths: Sequence[Path], jobs: int) -> Iterator[Page]:
    """Render and parse every page (groff in `jobs` threads), in the order of paths."""

    def one(path: Path) -> Page | None:
        roff = read_roff(path)
        return None if roff is None else parse_rendered(page_id(path), render(roff))

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for page in pool.map(one, paths):
            if page is not None:
                yield page


def package_of(paths: Sequence[Path]) -> dict[str, str]:
    """Page id -> the Debian package that installed it (`dpkg-query --search`); {} without dpkg."""
    wanted = {str(p): page_id(p) for p in paths}
    owners: dict[str, str] = {}
    names = sorted(wanted)
    for start in range(0, len(names), 500):
        try:
            # Exit status 1 only says that some path belongs to no package.
            done = subprocess.run(
                ["dpkg-query", "--search", *names[start : start + 500]],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return {}
        for line in done.stdout.splitlines():
            packages, _, path = line.partition(": ")
            if path in wanted:
                owners.setdefault(wanted[path], packages.split(",")[0].split(":")[0].strip())
    return owners


def _tokens_and_lengths(texts: Sequence[str]) -> tuple[list[dict[int, float]], list[float]]:
    """qdrant-edge's BM25 analysis of each text: term id -> frequency, and its length in terms."""
    import qdrant_edge as qe

    # With b = 0 and a huge k, BM25's saturated weight tf * (k + 1) / (tf + k) is tf itself.
    raw = qe.Bm25(qe.Bm25Config(k=1e9, b=0.0, language="english"))
    counts = []
    for text in texts:
        vec = raw.embed_document(text)
        counts.append({i: float(round(v)) for i, v in zip(vec.indices, vec.values, strict=True)})
    return counts, [sum(c.values()) for c in counts]


def bm25_ranking(
    corpus: dict[str, str], queries: dict[str, str], depth: int, k1: float = 0.9, b: float = 0.4
) -> dict[str, list[str]]:
    """Whole-document BM25 ranking (Pyserini's BEIR defaults k1 0.9, b 0.4), as a baseline."""
    import qdrant_edge as qe

    ids = list(corpus)
    counts, lengths = _tokens_and_lengths([corpus[d] for d in ids])
    avg = sum(lengths) / len(lengths)
    df: dict[int, int] = {}
    for c in counts:
        for term in c:
            df[term] = df.get(term, 0) + 1
    n = len(ids)
    query_model = qe.Bm25(qe.Bm25Config(language="english"))
    ranked: dict[str, list[str]] = {}
    for qid, text in queries.items():
        terms = query_model.embed_query(text).indices
        idf = {t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in terms}
        scores = []
        for doc, c, length in zip(ids, counts, lengths, strict=True):
            norm = k1 * (1 - b + b * length / avg)
            score = sum(idf[t] * c[t] * (k1 + 1) / (c[t] + norm) for t in terms if t in c)
            scores.append((-score, doc))
        ranked[qid] = [doc for _, doc in sorted(scores)[:depth]]
    return ranked


def bm25_baseline(folder: Path, k: int) -> dict[str, float]:
    """nDCG@k, Recall@k and MRR@k of whole-document BM25 on a BEIR folder."""
    from rag_appliance.retrieval.evaluation import load_beir, metrics_at_k

    data = load_beir(folder)
    judged = {q: data.queries[q] for q in data.qrels if q in data.queries}
    return metrics_at_k(bm25_ranking(data.corpus, judged, k), data.qrels, k)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the set into --out, or score a BEIR folder with BM25 (--bm25)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="folder to write the BEIR set into")
    parser.add_argument(
        "--man-root",
        type=Path,
        action="append",
        help="a manual folder to read (repeatable; default: those of `manpath --global`)",
    )
    parser.add_argument("--queries", type=int, default=400, help="number of queries")
    parser.add_argument("--docs", type=int, default=1500, help="number of documents")
    parser.add_argument("--max-chars", type=int, default=1000, help="cap on a document's text")
    parser.add_argument("--min-chars", type=int, default=300, help="shortest document kept")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--jobs", type=int, default=2, help="groff processes at once")
    parser.add_argument("--bm25", type=Path, help="instead: score this BEIR folder with BM25")
    parser.add_argument("--k", type=int, default=10, help="cut-off of the BM25 metrics")
    args = parser.parse_args(argv)
    if args.bm25 is not None:
        print(json.dumps({"bm25": bm25_baseline(args.bm25, args.k)}))
        return 0
    if args.out is None:
        parser.error("--out or --bm25 is required")
    roots = args.man_root or system_man_roots()
    if not roots:
        parser.error("no manual folder found: pass --man-root")
    paths = find_pages(roots)
    pages = list(load_pages(paths, args.jobs))
    beir = build_set(
        pages,
        n_queries=args.queries,
        n_docs=args.docs,
        seed=args.seed,
        min_chars=args.min_chars,
        max_chars=args.max_chars,
    )
    write_set(beir, args.out)
    by_id = {page_id(p): p for p in paths}
    owners = package_of([by_id[d["_id"]] for d in beir.corpus])
    rows = [f"{d['_id']}\t{owners.get(d['_id'], '-')}" for d in beir.corpus]
    (args.out / "sources.tsv").write_text(
        "corpus-id\tpackage\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    print(
        f"{len(paths)} pages read, {len(pages)} parsed; wrote {len(beir.corpus)} documents, "
        f"{len(beir.queries)} queries, {len(beir.qrels)} judgements to {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
