"""A real fine-tune of the bundled MiniLM on a few dozen pairs, served by name and evaluated."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from rag_appliance.embedding.encoder import Encoder
from rag_appliance.embedding.registry import CARD_FILE, lookup, resolve
from rag_appliance.finetune.command import FinetuneArgs, finetune_command
from rag_appliance.finetune.train import TrainConfig
from rag_appliance.local_commands import running
from rag_appliance.retrieval.model_compare import models_command
from tests.conftest import make_settings

DATA = Path(__file__).parents[2] / "data"


def test_finetune_serve_by_name_and_eval_two_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoder: Encoder
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    lines = (DATA / "finetune-pystdlib" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    pairs.write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    settings = make_settings(embedding={"num_threads": 2}).model_copy(
        update={"data_dir": tmp_path / "data"}
    )
    # One short epoch: the test proves the path, not the gain (docs/finetuning.md measures it).
    config = TrainConfig(epochs=1, batch_size=16, max_length=64)
    args = FinetuneArgs(pairs=pairs, name="tiny-minilm", force=True, config=config)
    assert asyncio.run(finetune_command(settings, args)) == 0

    found = lookup(settings.data_dir, "tiny-minilm")
    assert found is not None and found.base == "all-MiniLM-L6-v2"
    card = json.loads((found.path / CARD_FILE).read_text(encoding="utf-8"))
    assert set(card["metrics"]) == {"base", "finetuned"}
    assert set(card["metrics"]["finetuned"]) == {"ndcg@10", "recall@10", "mrr@10"}
    assert card["data"]["train_pairs"] == 32 and card["data"]["hard_negatives_mined"] > 0
    assert card["training"]["steps"] == 2
    assert not [p for p in found.path.parent.iterdir() if p.name.startswith(".")]

    # Served by its registry name: its own profile name, the base's pooling and size.
    tuned = Encoder(
        resolve(settings.embedding.model_copy(update={"model": "tiny-minilm"}), settings.data_dir)
    )
    assert tuned.profile.name == "tiny-minilm" and tuned.profile.dimension == 384
    texts = ["Return the number of items in a container", "Close the socket"]
    ids = [tuned.finalize(x, 64) for x in tuned.tokenize(texts)]
    vectors, before = tuned.encode(ids), encoder.encode(ids)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-3)
    # Trained: close to its base (a short epoch), yet not the base's weights any more.
    cosines = np.sum(vectors * before, axis=1)
    assert np.all(cosines > 0.8) and np.all(cosines < 0.99999)

    out = tmp_path / "eval.json"
    code = asyncio.run(
        models_command(
            settings,
            running,
            DATA / "beir-mini",
            "ev",
            10,
            ["all-MiniLM-L6-v2", "tiny-minilm"],
            "dense",
            out,
        )
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in printed and "tiny-minilm" in printed
    result = json.loads(out.read_text(encoding="utf-8"))
    assert list(result["models"]) == ["all-MiniLM-L6-v2", "tiny-minilm"]
    for row in result["models"].values():
        assert 0.5 < row["ndcg@10"] <= 1.0 and 0.0 < row["recall@10"] <= 1.0
