"""Domain exceptions and their OpenAI-style error bodies: the one error path."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class SettingsError(Exception):
    """Invalid configuration; the message is one line meant for the operator."""


class AppError(Exception):
    """Base of every error a client may see; carries the OpenAI error fields."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The OpenAI error object."""
        return error_body(self.message, self.type, self.param, self.code)


class InvalidRequest(AppError):
    """400: the request is malformed or breaks a limit."""

    status = 400
    type = "invalid_request_error"


class Unauthorized(AppError):
    """401: missing or wrong API key."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(AppError):
    """404: an unknown model, collection or route."""

    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    """404 for an unknown model name, as OpenAI answers it."""

    code = "model_not_found"


class CollectionNotFound(NotFound):
    """404 for an unknown collection."""

    code = "collection_not_found"


class Conflict(AppError):
    """409: the request contradicts stored state (e.g. another model's collection)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class UnsupportedMediaType(AppError):
    """415: a file type the parsers do not handle."""

    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class PayloadTooLarge(AppError):
    """413: the body is over the configured limit."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class Overloaded(AppError):
    """429: the engine queue is full; retry later."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class EngineError(AppError):
    """500: the model failed on this request; details stay in the server log."""

    status = 500
    type = "server_error"


class ServiceUnavailable(AppError):
    """503: the service is starting, stopping or disabled."""

    status = 503
    type = "service_unavailable"


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Build {"error": {message, type, param, code}}."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def status_type(status: int) -> str:
    """The OpenAI error type for a bare HTTP status."""
    if status == 401:
        return "invalid_request_error"
    if status == 429:
        return "rate_limit_error"
    if status < 500:
        return "invalid_request_error"
    return HTTPStatus(status).phrase.lower().replace(" ", "_")
