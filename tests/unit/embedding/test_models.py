"""Model profiles: lookup, prefixes, Matryoshka dimensions."""

from __future__ import annotations

import pytest

from rag_appliance.embedding.models import (
    BGE_EN_QUERY_INSTRUCTION,
    PROFILES,
    find_profile,
    with_overrides,
)


@pytest.mark.parametrize(
    ("name", "expected", "dim", "pooling"),
    [
        ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2", 384, "mean"),
        ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", 384, "mean"),
        ("BAAI/bge-large-en-v1.5", "BAAI/bge-large-en-v1.5", 1024, "cls"),
        ("/models/bge-base-en-v1.5/", "BAAI/bge-base-en-v1.5", 768, "cls"),
        ("intfloat/e5-large-v2", "intfloat/e5-large-v2", 1024, "mean"),
        ("/srv/weights/E5-LARGE-V2", "intfloat/e5-large-v2", 1024, "mean"),
        ("BAAI/bge-m3", "BAAI/bge-m3", 1024, "cls"),
    ],
)
def test_lookup(name: str, expected: str, dim: int, pooling: str) -> None:
    profile = find_profile(name)
    assert profile is not None
    assert (profile.name, profile.dimension, profile.pooling) == (expected, dim, pooling)


def test_unknown_model_has_no_profile() -> None:
    assert find_profile("/models/my-own-model") is None


def test_prefixes() -> None:
    e5 = find_profile("intfloat/e5-large-v2")
    bge = find_profile("BAAI/bge-large-en-v1.5")
    mini = find_profile("all-MiniLM-L6-v2")
    m3 = find_profile("BAAI/bge-m3")
    assert e5 and bge and mini and m3
    assert (e5.prefix("query"), e5.prefix("document"), e5.prefix(None)) == (
        "query: ",
        "passage: ",
        "",
    )
    assert bge.prefix("query") == BGE_EN_QUERY_INSTRUCTION and bge.prefix("document") == ""
    assert mini.prefix("query") == "" and m3.prefix("query") == ""


def test_max_lengths() -> None:
    lengths = {p.name: p.max_length for p in PROFILES}
    assert lengths["all-MiniLM-L6-v2"] == 256
    assert lengths["BAAI/bge-large-en-v1.5"] == 512
    assert lengths["BAAI/bge-m3"] == 8192


def test_dimensions_check() -> None:
    mini = find_profile("all-MiniLM-L6-v2")
    assert mini is not None
    mini.check_dimensions(None)
    mini.check_dimensions(384)
    with pytest.raises(ValueError, match="does not support 'dimensions'"):
        mini.check_dimensions(128)
    shortened = with_overrides(mini, [128, 256])
    shortened.check_dimensions(128)
    with pytest.raises(ValueError, match="128, 256, 384"):
        shortened.check_dimensions(100)
