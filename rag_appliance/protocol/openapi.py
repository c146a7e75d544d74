"""The OpenAPI document as the server answers: error statuses, streams, auth, no 422.

Routes declare their 200 body and the domain errors they raise (`responses(...)`); the
`install` hook adds what the middleware and the error handlers give every route (400 for a
body or parameter that fails validation, 401/403/429 from the API keys, 403 for cross-site
writes, 413 for big bodies) and drops FastAPI's automatic 422, which this server never sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from rag_appliance.auth.middleware import OPEN, OPS
from rag_appliance.store.validation import _NAME

# What store.validation.check_collection_name accepts, as a JSON Schema pattern.
COLLECTION_NAME = f"^{_NAME.pattern}$"

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rag_appliance.settings import Settings

BEARER = "bearer"
ERROR_REF = "#/components/schemas/ErrorResponse"
# Why each status happens, as the route documentation shows it.
WHY: dict[int, str] = {
    400: "Invalid request: a malformed body or parameter, or a broken limit (param names it).",
    401: "Missing or wrong API key.",
    403: "The key may not do this (role, collection scope, ops endpoint), or a cross-site "
    "browser write was refused.",
    404: "No such model, collection or document.",
    409: "The request contradicts stored state (e.g. a collection built with another model).",
    413: "The body is over the configured limit.",
    415: "The file type has no parser.",
    429: "Overloaded (retry after Retry-After seconds), or too many wrong API keys.",
    503: "The service is starting, stopping or disabled in the settings.",
}
_WRITES = frozenset({"post", "put", "patch", "delete"})
_VALIDATION = ("HTTPValidationError", "ValidationError")


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error the server sends: `{"error": {message, type, param, code}}`."""

    error: ErrorDetail


def responses(
    ok: type[BaseModel] | None,
    *errors: int,
    description: str = "Success.",
    stream: type[BaseModel] | None = None,
    media_type: str = "application/json",
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its 200 body (and event stream) and its domain errors."""
    out: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        out[200] = {"model": ok, "description": description}
    elif media_type != "application/json":
        out[200] = {
            "description": description,
            "content": {media_type: {"schema": {"type": "string"}}},
        }
    if stream is not None:
        out[200]["content"] = {"text/event-stream": {"schema": _event_schema(stream)}}
    for status in errors:
        out[status] = {"model": ErrorResponse, "description": WHY[status]}
    return out


def _event_schema(model: type[BaseModel]) -> dict[str, Any]:
    """One server-sent event (as OpenAPI before 3.2 reads `schema` of an event stream)."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "description": f"A JSON {model.__name__} (see its schema), an error object, "
                "or the final [DONE].",
                "contentMediaType": "application/json",
            },
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }


def install(app: FastAPI, settings: Settings) -> None:
    """Serve `document(app, settings)` (built once) as the app's OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's document, corrected to what the middleware and error handlers really send."""
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(
        title=app.title,
        version=app.version,
        description="Errors are OpenAI error objects (ErrorResponse) with the status given; "
        "streams (`stream: true`) are server-sent events of JSON chunks ending with "
        "`data: [DONE]`.",
        routes=app.routes,
    )
    server = settings.server
    keys = bool(server.api_keys)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error = ErrorResponse.model_json_schema(ref_template=_REF)
    schemas.setdefault("ErrorDetail", error.pop("$defs")["ErrorDetail"])
    schemas.setdefault("ErrorResponse", error)
    if keys:
        components["securitySchemes"] = {
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key from server.api_keys: 'Authorization: Bearer <key>'.",
            }
        }
    for path, item in spec.get("paths", {}).items():
        kind = "open" if path in OPEN else "ops" if path in OPS else "api"
        for method, op in item.items():
            _correct(op, method, kind, keys, settings)
    for name in _VALIDATION:
        schemas.pop(name, None)
    _embedding_input(schemas, settings)
    _limits(schemas, settings)
    _closed(schemas)
    _narrowed(schemas)
    _collection_names(spec, schemas)
    from rag_appliance.jobs.protocol import openapi_schemas

    openapi_schemas(schemas, settings)  # POST /v1/index/jobs's JSON and multipart bodies
    return spec


_REF = "#/components/schemas/{model}"


def _correct(op: dict[str, Any], method: str, kind: str, keys: bool, settings: Settings) -> None:
    """One operation: 422 -> 400, the auth statuses, 403 and 413 for writes with bodies."""
    got = op.setdefault("responses", {})
    if got.pop("422", None) is not None:  # FastAPI's marker of "has parameters or a body"
        _add(got, [400])
    secured = kind == "api" or (kind == "ops" and settings.server.protect_ops)
    if keys and secured:
        op["security"] = [{BEARER: []}]
        _add(got, [401, 403] + ([429] if settings.server.auth_max_failures else []))
    if method in _WRITES:
        _add(got, [403])
    if "requestBody" in op:
        _add(got, [413])


def _add(got: dict[str, Any], statuses: Iterable[int]) -> None:
    for status in statuses:
        got.setdefault(
            str(status),
            {
                "description": WHY[status],
                "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
            },
        )


def _embedding_input(schemas: dict[str, Any], settings: Settings) -> None:
    """Token-id inputs only where this server accepts them; at most its inputs per request."""
    request = schemas.get("EmbeddingRequest")
    if request is None:
        return
    field = request["properties"]["input"]
    if not settings.embedding.accept_token_ids:
        field["anyOf"] = [s for s in field["anyOf"] if _is_text(s)]
    most = settings.embedding.max_inputs_per_request
    field["anyOf"] = [
        {**s, "maxItems": most} if s.get("type") == "array" and "minimum" not in s["items"] else s
        for s in field["anyOf"]
    ]


def _collection_names(spec: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Collection names as the stores accept them, in bodies and in /v1/collections/{name}."""
    pattern = {"pattern": COLLECTION_NAME}
    for model in (
        "IndexRequest",
        "SearchRequest",
        "RagOptions",
        "Body_upload_files_v1_index_upload_post",
    ):
        _set(schemas, model, "collection", **pattern)
    for path, item in spec.get("paths", {}).items():
        if not path.startswith("/v1/collections/{name}"):
            continue
        for op in item.values():
            for param in op.get("parameters", ()):
                if param.get("in") == "path" and param.get("name") == "name":
                    param.setdefault("schema", {}).update(pattern)


def _limits(schemas: dict[str, Any], settings: Settings) -> None:
    """The limits set in this server's settings, where the models cannot know them."""
    _set(schemas, "SearchRequest", "top_k", maximum=settings.search.max_top_k)
    most = settings.ingest.max_documents_per_request
    _set(schemas, "IndexRequest", "documents", maxItems=most)
    _set(schemas, "IndexRequest", "texts", maxItems=most)
    _set(schemas, "RerankRequest", "query", minLength=1)
    _set(schemas, "RerankRequest", "documents", minItems=1, maxItems=settings.rerank.max_documents)
    _set(schemas, "RerankRequest", "top_n", minimum=1)
    room = settings.generation.max_model_len - 1  # the prompt takes a token at least
    # Chat's max_tokens is left open: max_completion_tokens, when given, overrides it.
    for model, field in (
        ("ChatCompletionRequest", "max_completion_tokens"),
        ("CompletionRequest", "max_tokens"),
    ):
        _set(schemas, model, field, maximum=room)


def _set(schemas: dict[str, Any], model: str, field: str, **keywords: Any) -> None:
    prop = schemas.get(model, {}).get("properties", {}).get(field)
    if prop is not None:
        prop.update(keywords)


_NULL = {"type": "null"}
_STOP = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 4},
        _NULL,
    ]
}
# OpenAI fields whose values this server refuses but one (one choice, text only, no storing).
_ONLY: dict[str, dict[str, dict[str, Any]]] = {
    "ChatCompletionRequest": {
        "n": {"anyOf": [{"const": 1}, _NULL]},
        "store": {"anyOf": [{"const": False}, _NULL]},
        "service_tier": {"anyOf": [{"enum": ["auto", "default"]}, _NULL]},
        "modalities": {"anyOf": [{"const": ["text"]}, _NULL]},
        "stop": _STOP,
    },
    "CompletionRequest": {
        "n": {"anyOf": [{"const": 1}, _NULL]},
        "best_of": {"anyOf": [{"const": 1}, _NULL]},
        "echo": {"anyOf": [{"const": False}, _NULL]},
        "suffix": {"anyOf": [{"const": ""}, _NULL]},
        "stop": _STOP,
    },
    "ChatMessageIn": {"role": {"enum": ["system", "developer", "user", "assistant"]}},
    "TextPart": {"type": {"const": "text"}, "text": {"type": "string"}},
}


# Rules across fields: only an assistant message may leave out its content; top_logprobs
# needs logprobs.
_RULES: dict[str, dict[str, Any]] = {
    "ChatMessageIn": {
        "anyOf": [
            {"properties": {"role": {"const": "assistant"}}},
            {"required": ["content"], "properties": {"content": {"type": ["string", "array"]}}},
        ]
    },
    "ChatCompletionRequest": {
        "anyOf": [
            {"properties": {"top_logprobs": _NULL}},
            {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
        ]
    },
}


def _narrowed(schemas: dict[str, Any]) -> None:
    """The values the chat and completion requests take, where pydantic's types say more."""
    for model, fields in _ONLY.items():
        for field, schema in fields.items():
            prop = schemas.get(model, {}).get("properties", {}).get(field)
            if prop is not None:
                prop.pop("anyOf", None)
                prop.pop("type", None)
                prop.update(schema)
    part = schemas.get("TextPart")
    if part is not None:
        part["required"] = ["type", "text"]
    for model, rule in _RULES.items():
        if model in schemas:
            schemas[model].setdefault("allOf", []).append(rule)


def _closed(schemas: dict[str, Any]) -> None:
    """Requests that refuse unknown fields say so; the known refused ones are null-only."""
    from rag_appliance.chat.protocol import REFUSED as CHAT_REFUSED
    from rag_appliance.rerank.protocol import REFUSED as RERANK_REFUSED

    for model, refused in (
        ("ChatCompletionRequest", CHAT_REFUSED),
        ("CompletionRequest", {}),
        ("RerankRequest", RERANK_REFUSED),
    ):
        schema = schemas.get(model)
        if schema is None:
            continue
        schema["additionalProperties"] = False
        props = schema.setdefault("properties", {})
        for name, why in refused.items():
            allowed: list[dict[str, Any]] = [{"type": "null"}]
            if model == "RerankRequest":
                allowed.append({"const": False})
            props[name] = {"anyOf": allowed, "description": f"Refused unless null: {why}."}


def _is_text(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" or schema.get("items", {}).get("type") == "string"
