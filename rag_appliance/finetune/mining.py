"""Hard negatives mined with the appliance's own search, and the corpus both sides search."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rag_appliance.finetune.pairs import Pair
from rag_appliance.retrieval.evaluation import BeirDataset
from rag_appliance.retrieval.retriever import Retriever, SearchOptions

_WORD = re.compile(r"\w+")
# Word-set overlap above which a hit counts as the positive itself (a copy, another version).
NEAR_DUPLICATE = 0.8


@dataclass(frozen=True)
class PairCorpus:
    """Every distinct text of the pairs under an id, and the held-out split as a BEIR set."""

    ids: dict[str, str]  # text -> doc id
    held_out: BeirDataset

    @property
    def texts(self) -> dict[str, str]:
        """doc id -> text."""
        return {i: t for t, i in self.ids.items()}


def build_corpus(train: Sequence[Pair], held_out: Sequence[Pair]) -> PairCorpus:
    """All positives and negatives as one corpus; the held-out queries judged against it."""
    ids: dict[str, str] = {}
    for p in [*train, *held_out]:
        for text in (p.positive, p.negative):
            if text is not None and text not in ids:
                ids[text] = f"d{len(ids) + 1:06d}"
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    qid_of: dict[str, str] = {}
    for p in held_out:
        qid = qid_of.setdefault(p.query, f"q{len(qid_of) + 1:05d}")
        queries[qid] = p.query
        qrels.setdefault(qid, {})[ids[p.positive]] = 1
    corpus = {i: t for t, i in ids.items()}
    return PairCorpus(ids, BeirDataset(corpus, queries, qrels))


def near_duplicate(a: str, b: str, bar: float = NEAR_DUPLICATE) -> bool:
    """Whether two texts are the same passage for training purposes (containment or overlap)."""
    x, y = " ".join(_WORD.findall(a.lower())), " ".join(_WORD.findall(b.lower()))
    if not x or not y or x in y or y in x:
        return True
    wa, wb = set(x.split()), set(y.split())
    return len(wa & wb) / len(wa | wb) >= bar


async def mine_negatives(
    retriever: Retriever,
    collection: str,
    corpus: PairCorpus,
    train: Sequence[Pair],
    top_k: int = 10,
    options: SearchOptions | None = None,
) -> tuple[list[Pair], int]:
    """Train pairs with a hard negative each (kept when given); and how many were mined."""
    texts = corpus.texts
    held = {t for q in corpus.held_out.qrels.values() for d in q for t in (texts[d],)}
    positives: dict[str, set[str]] = {}
    for p in train:
        positives.setdefault(p.query, set()).add(p.positive)
    grouped = replace(options or SearchOptions(), group_by_document=True, rerank=False)
    out: list[Pair] = []
    mined = 0
    for p in train:
        if p.negative is not None:
            out.append(p)
            continue
        hits = await retriever.search(collection, p.query, top_k, options=grouped)
        negative = None
        for hit in hits:
            text = texts.get(hit.doc_id)
            # Not an answer to this query, not a held-out text (those stay unseen), not a copy.
            if text is None or text in positives[p.query] or text in held:
                continue
            if near_duplicate(text, p.positive):
                continue
            negative = text
            break
        mined += negative is not None
        out.append(replace(p, negative=negative))
    return out, mined
