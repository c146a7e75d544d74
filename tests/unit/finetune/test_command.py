"""`finetune` with fake scoring and training: only a better model is saved, never half of one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from rag_appliance.embedding.models import find_profile
from rag_appliance.embedding.registry import CARD_FILE, lookup
from rag_appliance.errors import InvalidRequest
from rag_appliance.finetune.command import FinetuneArgs, Scored, Steps, finetune_command
from rag_appliance.finetune.mining import PairCorpus
from rag_appliance.finetune.pairs import Pair
from rag_appliance.finetune.train import TrainResult
from tests.conftest import make_settings

PROFILE = find_profile("all-MiniLM-L6-v2")


class FakeSteps:
    """Scores the base and the tuned model with given nDCGs; 'trains' by writing a file."""

    def __init__(self, base: float, tuned: float) -> None:
        self.ndcg = {"base": base, "tuned": tuned}
        self.calls: list[str] = []

    async def score(
        self,
        settings: Any,
        model: str,
        scratch: Path,
        corpus: PairCorpus,
        mine: list[Pair] | None = None,
    ) -> Scored:
        which = "base" if mine is not None else "tuned"
        self.calls.append(which)
        assert PROFILE is not None
        if which == "tuned":  # the card with the profile is there before the model is scored
            assert json.loads((Path(model) / CARD_FILE).read_text())["profile"]["pooling"]
        metrics = {"ndcg@10": self.ndcg[which], "recall@10": 0.5, "mrr@10": 0.4}
        return Scored(metrics, PROFILE, "all-MiniLM-L6-v2", list(mine or []), len(mine or []))

    def train(
        self,
        settings: Any,
        base: str,
        profile: Any,
        pairs: Any,
        config: Any,
        into: Path,
        work: Path,
    ) -> TrainResult:
        self.calls.append("train")
        (into / "model.safetensors").write_bytes(b"weights")
        return TrainResult(1.0, 3, 0.5, "MultipleNegativesRankingLoss", "fp32", "cpu")

    def steps(self) -> Steps:
        return Steps(score=self.score, train=self.train)


def pairs_file(tmp_path: Path, n: int = 10) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [{"query": f"question {i}", "positive": f"answer text {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(tmp_path: Path, fake: FakeSteps, **kwargs: Any) -> int:
    settings = make_settings().model_copy(update={"data_dir": tmp_path / "data"})
    args = FinetuneArgs(pairs=kwargs.pop("pairs", pairs_file(tmp_path)), **kwargs)
    return asyncio.run(finetune_command(settings, args, fake.steps()))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_better_model_is_saved_with_its_card(tmp_path: Path) -> None:
    out = tmp_path / "out" / "tuned"
    assert run(tmp_path, FakeSteps(0.5, 0.6), output=out) == 0
    card = json.loads((out / CARD_FILE).read_text())
    assert card["name"] == "tuned" and card["base"] == "all-MiniLM-L6-v2"
    assert card["metrics"]["base"]["ndcg@10"] == 0.5
    assert card["metrics"]["finetuned"]["ndcg@10"] == 0.6
    assert card["data"]["train_pairs"] + card["data"]["held_out_pairs"] == 10
    assert card["data"]["sha256"].startswith("sha256:")
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert leftovers(out.parent) == ["tuned"]  # no staging folder left beside it


def test_a_model_no_better_than_its_base_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out" / "tuned"
    fake = FakeSteps(0.6, 0.6)
    with pytest.raises(InvalidRequest, match="does not beat its base") as info:
        run(tmp_path, fake, output=out)
    assert "0.6000 vs 0.6000" in info.value.message and info.value.param == "force"
    assert fake.calls == ["base", "train", "tuned"]
    assert leftovers(out.parent) == []


def test_force_saves_a_worse_model(tmp_path: Path) -> None:
    out = tmp_path / "out" / "tuned"
    assert run(tmp_path, FakeSteps(0.6, 0.4), output=out, force=True) == 0
    assert json.loads((out / CARD_FILE).read_text())["metrics"]["finetuned"]["ndcg@10"] == 0.4


def test_name_alone_saves_into_the_registry(tmp_path: Path) -> None:
    assert run(tmp_path, FakeSteps(0.5, 0.7), name="docs-minilm") == 0
    found = lookup(tmp_path / "data", "docs-minilm")
    assert found is not None and found.metrics["finetuned"]["ndcg@10"] == 0.7


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": "../escape"}, "--name"),
        ({}, "--output DIR or --name"),
        ({"name": "x", "from_logs": True}, "either --pairs FILE or --from-logs"),
    ],
)
def test_bad_arguments_fail_before_any_work(
    tmp_path: Path, kwargs: dict[str, Any], words: str
) -> None:
    fake = FakeSteps(0.5, 0.6)
    with pytest.raises(InvalidRequest, match=words):
        run(tmp_path, fake, **kwargs)
    assert fake.calls == []


def test_an_existing_output_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    fake = FakeSteps(0.5, 0.6)
    with pytest.raises(InvalidRequest, match="already exists"):
        run(tmp_path, fake, output=out)
    assert leftovers(out) == ["keep.txt"] and fake.calls == []


def test_a_malformed_pairs_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "q", "positive": "p"}\n{"query": "q2"}\n', encoding="utf-8")
    with pytest.raises(InvalidRequest, match="line 2"):
        run(tmp_path, FakeSteps(0.5, 0.6), pairs=path, output=tmp_path / "o")
    assert not (tmp_path / "o").exists()
