"""Model profiles: what each supported embedding model needs to be served correctly."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Literal

Pooling = Literal["mean", "cls"]
InputType = Literal["query", "document"]

BGE_EN_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


@dataclass(frozen=True)
class ModelProfile:
    """Pooling, prefixes, limits and dimensions of one embedding model."""

    name: str
    dimension: int
    max_length: int
    pooling: Pooling
    normalize: bool = True
    query_prefix: str = ""
    document_prefix: str = ""
    matryoshka_dims: tuple[int, ...] = ()
    aliases: tuple[str, ...] = field(default=())

    def prefix(self, input_type: InputType | None) -> str:
        """The text prepended to an input of this type."""
        if input_type == "query":
            return self.query_prefix
        if input_type == "document":
            return self.document_prefix
        return ""

    def check_dimensions(self, dimensions: int | None) -> None:
        """Raise ValueError when `dimensions` is not servable by this model."""
        if dimensions is None or dimensions == self.dimension:
            return
        if not self.matryoshka_dims:
            raise ValueError(
                f"model '{self.name}' does not support 'dimensions' (it is not Matryoshka-trained);"
                f" omit it or pass {self.dimension}"
            )
        if dimensions not in self.matryoshka_dims:
            allowed = ", ".join(str(d) for d in sorted({*self.matryoshka_dims, self.dimension}))
            raise ValueError(f"'dimensions' must be one of {allowed} for model '{self.name}'")


PROFILES: tuple[ModelProfile, ...] = (
    ModelProfile(
        name="all-MiniLM-L6-v2",
        dimension=384,
        max_length=256,
        pooling="mean",
        aliases=("sentence-transformers/all-MiniLM-L6-v2",),
    ),
    ModelProfile(
        name="BAAI/bge-large-en-v1.5",
        dimension=1024,
        max_length=512,
        pooling="cls",
        query_prefix=BGE_EN_QUERY_INSTRUCTION,
        aliases=("bge-large-en-v1.5", "bge-large"),
    ),
    ModelProfile(
        name="BAAI/bge-base-en-v1.5",
        dimension=768,
        max_length=512,
        pooling="cls",
        query_prefix=BGE_EN_QUERY_INSTRUCTION,
        aliases=("bge-base-en-v1.5", "bge-base"),
    ),
    ModelProfile(
        name="intfloat/e5-large-v2",
        dimension=1024,
        max_length=512,
        pooling="mean",
        query_prefix="query: ",
        document_prefix="passage: ",
        aliases=("e5-large-v2", "e5-large"),
    ),
    ModelProfile(
        # Dense retrieval head only; BGE-M3 needs no instruction on either side.
        name="BAAI/bge-m3",
        dimension=1024,
        max_length=8192,
        pooling="cls",
        aliases=("bge-m3",),
    ),
    ModelProfile(
        name="mixedbread-ai/mxbai-embed-large-v1",
        dimension=1024,
        max_length=512,
        pooling="cls",
        query_prefix=BGE_EN_QUERY_INSTRUCTION,
        matryoshka_dims=(512, 256, 128, 64),
        aliases=("mxbai-embed-large-v1",),
    ),
)


def _keys(profile: ModelProfile) -> set[str]:
    names = {profile.name, *profile.aliases}
    return {n.lower() for n in names} | {PurePath(n).name.lower() for n in names}


def find_profile(name_or_path: str) -> ModelProfile | None:
    """The profile for a hub id, alias or a local folder named after the model."""
    wanted = {name_or_path.lower(), PurePath(name_or_path.rstrip("/")).name.lower()}
    for profile in PROFILES:
        if wanted & _keys(profile):
            return profile
    return None


def generic_profile(name: str, dimension: int, max_length: int, pooling: Pooling) -> ModelProfile:
    """A profile for a model we have no entry for: no prefixes, no Matryoshka."""
    return ModelProfile(name=name, dimension=dimension, max_length=max_length, pooling=pooling)


def with_overrides(profile: ModelProfile, matryoshka_dims: list[int] | None = None) -> ModelProfile:
    """Apply settings that refine a profile."""
    if matryoshka_dims is None:
        return profile
    return replace(profile, matryoshka_dims=tuple(sorted(set(matryoshka_dims), reverse=True)))
