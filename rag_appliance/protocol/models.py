"""OpenAI /v1/models response shapes."""

from __future__ import annotations

from typing import Any


def model_list(names: list[str], created: int, owned_by: str = "rag-appliance") -> dict[str, Any]:
    """The OpenAI list-of-models body."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": owned_by}
            for name in names
        ],
    }
