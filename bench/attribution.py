"""Citation attribution: precision and recall on labelled answer sentences.

    python bench/attribution.py [--sweep]

Each labelled sentence (tests/data/attribution/: dev.json and test.json written by hand,
real.json from the bundled model's own answers) names the passage that supports it, or none.
The attributor (rag_appliance/chat/citations.py, with the served embedding model,
all-MiniLM-L6-v2 on the CPU profile) cites a sentence's best passage when its support clears
the threshold. Precision: citations naming the right passage / citations
made. Recall: sentences cited with the right passage / sentences that have one. `--sweep`
prints the grid over threshold and cosine weight on dev (how the constants were chosen);
test and real are only ever reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "attribution"
sys.path.insert(0, str(ROOT))

from rag_appliance.chat import citations  # noqa: E402


@dataclass(frozen=True)
class Scored:
    """One case's labels and support parts."""

    gold: list[int | None]  # per sentence: the 1-based passage, or None
    cosine: np.ndarray
    overlap: np.ndarray


@dataclass(frozen=True)
class Measure:
    """Precision and recall at one setting."""

    precision: float
    recall: float
    cited: int
    unsupported_cited: int
    sentences: int

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


async def score(split: str, embed: citations.Embed) -> list[Scored]:
    """Support parts of every labelled sentence of a split."""
    cases = json.loads((DATA / f"{split}.json").read_text())["cases"]
    out = []
    for case in cases:
        texts = [s["text"] for s in case["sentences"]]
        cosine, overlap = await citations.support_parts(embed, texts, case["passages"])
        out.append(Scored([s["source"] for s in case["sentences"]], cosine, overlap))
    return out


def measure(scored: list[Scored], threshold: float, weight: float) -> Measure:
    """What the attributor would cite at this threshold and cosine weight."""
    right = cited = unsupported = supported = total = 0
    for case in scored:
        support = weight * case.cosine + (1 - weight) * case.overlap
        for row, gold in enumerate(case.gold):
            total += 1
            supported += gold is not None
            best = int(np.argmax(support[row]))
            if support[row, best] < threshold:
                continue
            cited += 1
            right += gold == best + 1
            unsupported += gold is None
    return Measure(
        precision=right / cited if cited else 1.0,
        recall=right / supported if supported else 1.0,
        cited=cited,
        unsupported_cited=unsupported,
        sentences=total,
    )


def row(name: str, m: Measure) -> str:
    """One result line."""
    return (
        f"{name:<26} precision {m.precision:.3f}  recall {m.recall:.3f}  F1 {m.f1:.3f}  "
        f"({m.cited} cited of {m.sentences}; {m.unsupported_cited} unsupported cited)"
    )


async def main() -> None:
    """Load the embedder, score both splits, print the measures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="print the grid on dev")
    args = parser.parse_args()
    from rag_appliance.embedding.encoder import Encoder
    from rag_appliance.embedding.service import EmbeddingService
    from rag_appliance.settings import load_settings

    settings = load_settings().embedding
    service = EmbeddingService(Encoder(settings), settings)
    await service.start()
    try:
        embed = citations.embedder(service)
        splits = {name: await score(name, embed) for name in ("dev", "test", "real")}
    finally:
        await service.stop()
    if args.sweep:
        weights = [i / 10 for i in range(11)]
        thresholds = [0.2 + i * 0.025 for i in range(28)]
        grid = [(measure(splits["dev"], t, w), t, w) for w in weights for t in thresholds]
        for m, t, w in sorted(grid, key=lambda g: -g[0].f1)[:15]:
            print(row(f"dev t={t:.3f} w={w:.1f}", m))
        print()
    threshold, weight = citations.THRESHOLD, citations.COSINE_WEIGHT
    print(f"threshold {threshold}, cosine weight {weight} (rag_appliance/chat/citations.py)")
    for name, scored in splits.items():
        print(row(name, measure(scored, threshold, weight)))
    for name, w in (("lexical only", 0.0), ("cosine only", 1.0)):
        for split in ("test", "real"):
            print(row(f"{name} ({split})", measure(splits[split], threshold, w)))


if __name__ == "__main__":
    asyncio.run(main())
