"""The commented `rerank:` block of each GPU profile validates once uncommented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rag_appliance.settings import RerankSettings

ROOT = Path(__file__).resolve().parents[3]
PROFILES = sorted(p.name for p in (ROOT / "configs").glob("gpu-*.yaml"))


def commented_block(text: str) -> dict[str, object]:
    """The `# rerank:` block, uncommented and parsed."""
    lines = text.splitlines()
    start = lines.index("# rerank:")
    block = ["rerank:"]
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        block.append(line[1:])
    parsed = yaml.safe_load("\n".join(block))
    assert isinstance(parsed, dict)
    section = parsed["rerank"]
    assert isinstance(section, dict)
    return section


@pytest.mark.parametrize("name", PROFILES)
def test_the_commented_rerank_block_is_valid_and_names_bge_reranker(name: str) -> None:
    text = (ROOT / "configs" / name).read_text()
    settings = RerankSettings.model_validate(commented_block(text))
    assert settings.model == "BAAI/bge-reranker-v2-m3"
    assert (settings.device, settings.dtype) == ("cuda", "float16")
    # The comment's activation arithmetic is for these values.
    assert (settings.batch_size, settings.max_length) == (16, 1024)
    assert "568e6 params x 2 bytes" in text and "1.06 GiB" in text


def test_every_gpu_profile_has_the_block() -> None:
    assert len(PROFILES) >= 3
