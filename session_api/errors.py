"""Typed domain errors and the one HTTP error shape: {"error": code, "message": ...}.

Code below the routes raises these; only the handlers here turn them into responses.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

logger = logging.getLogger("session_api")


class ApiError(Exception):
    status: int = 500
    code: str = "internal_error"
    default_message: str = "Unexpected server error."

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.extra = extra
        self.headers: dict[str, str] = {}


class InvalidInput(ApiError):
    status, code = 400, "invalid_input"
    default_message = "Empty or invalid audio/image file."


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"
    default_message = "Missing Authorization header. Use: Authorization: Bearer <api_key>"


class Forbidden(ApiError):
    status, code = 403, "forbidden"
    default_message = "Invalid or revoked API key."


class NotFound(ApiError):
    status, code = 404, "not_found"
    default_message = "Endpoint or job does not exist."


class NoOutput(ApiError):
    status, code = 404, "no_output"
    default_message = "No stored output available for this job."


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"
    default_message = "Wrong HTTP method."


class RequestTimeout(ApiError):
    status, code = 408, "request_timeout"
    default_message = "The request body was not received in time."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.headers = {"Connection": "close"}  # the rest of the body is never read


class NotReady(ApiError):
    status, code = 409, "not_ready"
    default_message = "Job is still processing. Poll GET /v1/jobs/{id} until status is completed."


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"
    default_message = "Upload exceeds 50 MB limit."


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"
    default_message = "Format not supported."


class ValidationFailed(ApiError):
    status, code = 422, "validation_error"
    default_message = "Missing required fields."


class RateLimitExceeded(ApiError):
    status, code = 429, "rate_limit_exceeded"

    def __init__(self, *, rpm: int, retry_after_s: int) -> None:
        super().__init__(
            f"Slow down! You've hit the limit of {rpm} requests per minute.",
            retry_after_seconds=retry_after_s,
        )
        self.headers = {"Retry-After": str(retry_after_s)}


class MonthlyCapExceeded(ApiError):
    status, code = 429, "monthly_cap_exceeded"
    default_message = "Monthly request cap reached."


class QueueUnavailable(ApiError):
    status, code = 503, "queue_unavailable"
    default_message = "Job queue is temporarily unavailable. Please try again in a moment."


class StorageUnavailable(ApiError):
    status, code = 503, "storage_unavailable"
    default_message = "Output storage is temporarily unavailable."


class TemporarilyUnavailable(ApiError):
    status, code = 503, "temporarily_unavailable"
    default_message = "Service is temporarily unavailable."


class AuthUnavailable(ApiError):
    status, code = 503, "auth_unavailable"
    default_message = "Authentication service is temporarily unavailable."


class InvalidCallbackUrl(ApiError):
    status, code = 400, "invalid_callback_url"
    default_message = "X-Callback-URL must be a public HTTPS URL of at most 2048 characters."


class InvalidFaceUrl(ApiError):
    status, code = 400, "invalid_face_url"
    default_message = "face_url must use HTTPS and be at most 2048 characters."


class InvalidMode(ApiError):
    status, code = 400, "invalid_mode"
    default_message = "mode must be 'conversation' (Interactive) or 'passthrough' (Rendering)."


class AlreadyEnded(ApiError):
    status, code = 409, "already_ended"
    default_message = "Session already ended."


class RateLimited(ApiError):
    """The realtime endpoints' 429 (the spec names it rate_limited there)."""

    status, code = 429, "rate_limited"
    default_message = "Too many requests — wait and retry."

    def __init__(self, message: str | None = None, *, retry_after_s: int) -> None:
        super().__init__(message, retry_after_seconds=retry_after_s)
        self.headers = {"Retry-After": str(retry_after_s)}


class NoCapacity(ApiError):
    status, code = 503, "no_capacity"

    def __init__(self, *, retry_after_s: int) -> None:
        super().__init__(
            f"All GPU pods are busy. Retry after {retry_after_s} seconds.",
            retry_after_seconds=retry_after_s,
        )
        self.headers = {"Retry-After": str(retry_after_s)}


class UrlGenerationFailed(ApiError):
    status, code = 500, "url_generation_failed"
    default_message = "Failed to generate download URL."


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": code, "message": message, **extra}, status_code=status, headers=headers
    )


_HTTP_CODES: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    known = _HTTP_CODES.get(exc.status_code)
    if known is not None:
        return error_response(exc.status_code, known.code, known.default_message)
    code = "internal_error" if exc.status_code >= 500 else "bad_request"
    return error_response(exc.status_code, code, str(exc.detail))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [".".join(str(p) for p in err.get("loc", ())) for err in exc.errors()]
    return error_response(
        422, "validation_error", "Invalid or missing fields: " + ", ".join(fields)
    )


async def _dependency_down(_: Request, exc: Exception) -> JSONResponse:
    # A database or network error no route handled: a backing service is down or restarting
    # (docs: 503 means retry), not a bug in the request. The first request after it is back works.
    logger.warning("dependency unavailable", extra={"error_type": type(exc).__name__})
    return error_response(503, TemporarilyUnavailable.code, TemporarilyUnavailable.default_message)


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    # The client closed the connection mid-body: nothing to fix and nobody to answer. One line,
    # no traceback; the answer below is never read.
    logger.info("client disconnected", extra={"method": request.method, "path": request.url.path})
    return error_response(400, "bad_request", "The client disconnected.")


async def _too_deep(_: Request, exc: Exception) -> JSONResponse:
    # A parser that recursed once per nesting level (JSON from a client, a token): the input's
    # fault. Bodies the routes read are depth-checked first (session_api.json_limits).
    logger.info("request nested too deeply")
    return error_response(422, ValidationFailed.code, "The request nests too deeply.")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
    return error_response(500, "internal_error", "Unexpected server error.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(RecursionError, _too_deep)
    app.add_exception_handler(SQLAlchemyError, _dependency_down)
    app.add_exception_handler(OSError, _dependency_down)
    app.add_exception_handler(Exception, _unexpected)
