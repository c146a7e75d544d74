"""bench/build_beir_set.py: man pages to a BEIR set (parsing, query removal, dedup, output)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.retrieval.evaluation import load_beir

# What groff prints for a page (long line length, no bold): header, sections, footer.
RENDERED = """\
TAR(1)                        GNU TAR Manual                        TAR(1)

NAME
       tar - an archiving utility

SYNOPSIS
       tar [OPTION...] [FILE]...

DESCRIPTION
       GNU tar is an archiving program designed to store multiple files in a single file \u2010 \
an archive. Tar is an archiving utility.  It can restore individual files from it.

       The \u2018-x\u2019 option extracts members.

SEE ALSO
       cpio(1)

GNU                               2023-01-01                            TAR(1)
"""

FILLER = " It keeps several versions of every member and checks them on extraction."


def rendered(names: str, summary: str, body: str) -> str:
    """A minimal rendered page."""
    return (
        f"X(1)   Manual   X(1)\n\nNAME\n       {names} - {summary}\n\nDESCRIPTION\n"
        f"       {body}\n\n                 X(1)\n"
    )


def page(bbs: Any, pid: str, names: str, summary: str, body: str) -> Any:
    """A parsed Page from a minimal rendered page."""
    result = bbs.parse_rendered(pid, rendered(names, summary, body))
    assert result is not None
    return result


def test_a_rendered_page_parses_into_names_summary_and_description(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    parsed = bbs.parse_rendered("tar.1", RENDERED)
    assert parsed.names == ("tar",)
    assert parsed.section == "1"
    assert parsed.summary == "an archiving utility"
    # Flattened, typographic hyphens and quotes folded, other sections and the footer left out.
    assert parsed.description.startswith("GNU tar is an archiving program")
    assert "a single file - an archive." in parsed.description
    assert parsed.description.endswith("The '-x' option extracts members.")
    assert "cpio" not in parsed.description and "2023" not in parsed.description


def test_several_names_and_an_mdoc_dash_parse(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    text = rendered("printf, fprintf, sprintf", "formatted output conversion", "Prints.")
    assert bbs.parse_rendered("printf.3", text).names == ("printf", "fprintf", "sprintf")
    mdoc = "SSH(1)\nNAME\n     ssh \u2014 remote login client\nDESCRIPTION\n     Logs in.\nSSH(1)\n"
    assert bbs.parse_rendered("ssh.1", mdoc).summary == "remote login client"
    two = rendered(
        "hostname", "show the host name\n       dnsdomainname - show the DNS domain", "x"
    )
    assert bbs.parse_rendered("hostname.1", two).summary == "show the host name"


def test_a_page_without_a_description_or_a_name_line_is_skipped(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    no_description = "X(1)\nNAME\n       x - does x\nSYNOPSIS\n       x\nX(1)\n"
    assert bbs.parse_rendered("x.1", no_description) is None
    no_summary = "X(1)\nNAME\n       x\nDESCRIPTION\n       Does x.\nX(1)\n"
    assert bbs.parse_rendered("x.1", no_summary) is None


def test_the_sentence_that_restates_the_summary_leaves_the_document(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    parsed = bbs.parse_rendered("tar.1", RENDERED)
    text = bbs.document_text(parsed, min_chars=10, max_chars=1000)
    assert "archiving utility" not in text.lower()
    assert "archiving program" in text and "restore individual files" in text
    assert bbs.document_text(parsed, min_chars=1000, max_chars=2000) is None


def test_a_long_document_is_cut_at_a_sentence(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    body = "First sentence here." + FILLER * 20
    text = bbs.document_text(page(bbs, "a.1", "a", "do a thing", body), 10, 300)
    assert len(text) <= 300 and text.endswith("extraction.")


def corpus_pages(bbs: Any) -> list[Any]:
    """Five pages: two share a summary, two share a text, one names itself in its summary."""
    return [
        page(bbs, "zip.1", "zip", "package and compress files", "Zip packs files." + FILLER),
        page(bbs, "gzip.1", "gzip", "compress or expand files", "Gzip shrinks files." + FILLER),
        page(bbs, "gunzip.1", "gunzip", "compress or expand files", "Gunzip undoes it." + FILLER),
        page(bbs, "zcat.1", "zcat", "print compressed files", "Gunzip undoes it." + FILLER),
        page(bbs, "perl.1", "perl", "the Perl language interpreter", "Runs scripts." + FILLER),
        page(bbs, "ls.1", "ls", "ls", "Lists a directory." + FILLER),
    ]


def test_the_set_has_one_query_per_summary_and_handles_duplicates(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    beir = bbs.build_set(corpus_pages(bbs), n_queries=10, n_docs=10, min_chars=20)
    # zcat's text is gunzip's, so it is kept once, under the first id in sorted order.
    assert [d["_id"] for d in beir.corpus] == ["gunzip.1", "gzip.1", "ls.1", "perl.1", "zip.1"]
    assert beir.corpus[0]["title"] == "gunzip(1)"
    by_text = {q["text"]: q["_id"] for q in beir.queries}
    # perl names itself and 'ls' is one word: neither is a query.
    assert set(by_text) == {
        "package and compress files",
        "compress or expand files",
        "print compressed files",
    }
    judged = {(q, d) for q, d, _ in beir.qrels}
    assert (by_text["compress or expand files"], "gzip.1") in judged
    assert (by_text["compress or expand files"], "gunzip.1") in judged
    assert (by_text["print compressed files"], "gunzip.1") in judged
    assert {s for _, _, s in beir.qrels} == {1} and len(beir.qrels) == 4


def test_sampling_is_deterministic_and_keeps_every_judged_document(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    first = bbs.build_set(corpus_pages(bbs), n_queries=2, n_docs=3, min_chars=20, seed=7)
    again = bbs.build_set(
        list(reversed(corpus_pages(bbs))), n_queries=2, n_docs=3, min_chars=20, seed=7
    )
    assert first == again
    assert len(first.queries) == 2
    ids = {d["_id"] for d in first.corpus}
    assert {d for _, d, _ in first.qrels} <= ids
    assert len(ids) >= 3


def test_the_written_set_loads_with_load_beir(bench_module: Any, tmp_path: Path) -> None:
    bbs = bench_module("build_beir_set")
    beir = bbs.build_set(corpus_pages(bbs), n_queries=10, n_docs=10, min_chars=20)
    bbs.write_set(beir, tmp_path)
    header = (tmp_path / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "query-id\tcorpus-id\tscore"
    row = json.loads((tmp_path / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(row) == {"_id", "title", "text"}
    data = load_beir(tmp_path)
    assert len(data.corpus) == 5 and len(data.queries) == 3
    assert data.corpus["gzip.1"].startswith("gzip(1) Gzip shrinks files.")


def test_links_redirects_and_excluded_pages_are_not_read(tmp_path: Path, bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    man1 = tmp_path / "man1"
    man1.mkdir()
    (man1 / "tar.1.gz").write_bytes(gzip.compress(b".TH TAR 1\n"))
    (man1 / "gtar.1.gz").symlink_to("tar.1.gz")
    (man1 / "gcloud-x.1.gz").write_bytes(gzip.compress(b".TH X 1\n"))
    (man1 / "other.1").write_text(".so man1/tar.1\n", encoding="utf-8")
    paths = bbs.find_pages([tmp_path])
    assert [p.name for p in paths] == ["other.1", "tar.1.gz"]
    assert [bbs.page_id(p) for p in paths] == ["other.1", "tar.1"]
    assert bbs.read_roff(paths[0]) is None
    assert bbs.read_roff(paths[1]) == ".TH TAR 1\n"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_renders_roff_that_parses(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    roff = (
        ".TH DEMO 1\n.SH NAME\ndemo \\- show a demo\n.SH DESCRIPTION\n.B demo\nprints a long "
        "line\nof text and\n.I exits.\n"
    )
    parsed = bbs.parse_rendered("demo.1", bbs.render(roff))
    assert parsed.summary == "show a demo"
    assert parsed.description == "demo prints a long line of text and exits."


def test_bm25_ranks_the_document_that_shares_rare_terms_first(bench_module: Any) -> None:
    bbs = bench_module("build_beir_set")
    corpus = {
        "a": "Archive files into a tarball and extract them again.",
        "b": "Compress a file with the deflate algorithm.",
        "c": "List the files of a directory.",
    }
    ranked = bbs.bm25_ranking(corpus, {"q": "extract an archive"}, depth=2)
    assert ranked["q"][0] == "a" and len(ranked["q"]) == 2
