"""The /v1/embeddings request and response models."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from pydantic import ValidationError

from rag_appliance.embedding.service import EmbedResult
from rag_appliance.protocol.embeddings import EmbeddingRequest, embedding_response


@pytest.mark.parametrize(
    ("raw", "inputs"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        ([5, 6, 7], [[5, 6, 7]]),
        ([[5, 6], [7]], [[5, 6], [7]]),
    ],
)
def test_input_shapes(raw: object, inputs: list[object]) -> None:
    assert EmbeddingRequest.model_validate({"input": raw}).to_params().inputs == inputs


@pytest.mark.parametrize(
    "raw", [1.5, [1.5], [True], ["a", 1], [["a"]], {"text": "a"}, None, [[1], "a"]]
)
def test_wrong_types_are_rejected(raw: object) -> None:
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"input": raw})


def test_extension_fields_and_extras() -> None:
    body = EmbeddingRequest.model_validate(
        {
            "input": "x",
            "input_type": "query",
            "truncate": False,
            "dimensions": 4,
            "user": "u",
            "unknown_future_field": 1,
        }
    )
    params = body.to_params()
    assert (params.input_type, params.truncate, params.dimensions) == ("query", False, 4)
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"input": "x", "encoding_format": "int8"})
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"input": "x", "dimensions": 0})


def test_response_float_and_base64_agree() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 5)).astype(np.float32)
    result = EmbedResult(vectors=vectors, prompt_tokens=11)
    as_float = embedding_response(result, "m", "float")
    as_b64 = embedding_response(result, "m", "base64")
    assert as_float["object"] == "list" and as_float["model"] == "m"
    assert as_float["usage"] == {"prompt_tokens": 11, "total_tokens": 11}
    assert [d["index"] for d in as_b64["data"]] == [0, 1, 2]
    for i, item in enumerate(as_b64["data"]):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, vectors[i])
        np.testing.assert_array_equal(as_float["data"][i]["embedding"], vectors[i])
