"""The OpenAPI document: the real contract, error responses and the /v1/generate upload included.

FastAPI sees neither: errors are raised as ApiError and rendered by session_api.errors, and
/v1/generate streams its multipart body itself. This adds both, so generated clients and
schema-driven testers see what the server answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Machine-readable code, e.g. not_found."},
        "message": {"type": "string", "description": "Human-readable description."},
        "retry_after_seconds": {"type": "integer", "description": "With 429 and no_capacity."},
    },
    "additionalProperties": True,
}

# Codes each status stands for (session_api.errors); the descriptions list them.
_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_input", "invalid_callback_url", "invalid_face_url", "invalid_mode"),
    401: ("unauthorized",),
    403: ("forbidden",),
    404: ("not_found", "no_output"),
    408: ("request_timeout",),
    409: ("not_ready", "already_ended"),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    422: ("validation_error",),
    429: ("rate_limit_exceeded", "monthly_cap_exceeded", "rate_limited"),
    500: ("internal_error", "url_generation_failed"),
    503: (
        "auth_unavailable",
        "queue_unavailable",
        "storage_unavailable",
        "temporarily_unavailable",
        "no_capacity",
    ),
}
_KEYED = (401, 403, 429, 500, 503)  # every endpoint behind an API key
_UPLOAD = (400, 408, 413, 415, 422)
# Statuses beyond _KEYED, per operation; operations not named here answer only 500.
_OPERATIONS: dict[tuple[str, str], tuple[int, ...]] = {
    ("get", "/v1/status"): _KEYED,
    ("get", "/v1/me"): _KEYED,
    ("post", "/v1/generate"): (*_KEYED, *_UPLOAD),
    ("get", "/v1/jobs"): (*_KEYED, 422),
    ("get", "/v1/jobs/{job_id}"): (*_KEYED, 404),
    ("get", "/v1/jobs/{job_id}/result"): (*_KEYED, 404, 409),
    ("post", "/v1/realtime/session"): (*_KEYED, *_UPLOAD),
    ("get", "/v1/realtime/session/{session_id}"): (*_KEYED, 404),
    ("post", "/v1/realtime/session/{session_id}"): (*_KEYED, *_UPLOAD, 404, 409),
    ("patch", "/v1/realtime/session/{session_id}"): (*_KEYED, *_UPLOAD, 404, 409),
    ("delete", "/v1/realtime/session/{session_id}"): (*_KEYED, 404, 409),
}

GENERATE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["audio", "image"],
                "properties": {
                    "audio": {
                        "type": "string",
                        "format": "binary",
                        "description": "Speech: WAV, MP3, OGG or WebM (judged from content).",
                    },
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "description": "A photo with one face: PNG, JPEG or WebP.",
                    },
                },
            },
            "encoding": {
                "audio": {"contentType": "audio/wav, audio/mpeg, audio/ogg, audio/webm"},
                "image": {"contentType": "image/png, image/jpeg, image/webp"},
            },
        }
    },
    "description": "audio and image together at most 50 MB.",
}


def install_openapi(app: FastAPI) -> None:
    """Replace app.openapi with one that documents errors and the /v1/generate body."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = document_errors(schema)
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):  # our 422s are Error, not these
        schemas.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = _OPERATIONS.get((method, path), (500,))
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
            if "422" in responses and 422 not in statuses:
                del responses["422"]  # FastAPI's default; nothing here can answer it
    generate = schema.get("paths", {}).get("/v1/generate", {}).get("post")
    if generate is not None:
        generate["requestBody"] = GENERATE_BODY
    return schema


def _error_response(status: int) -> dict[str, Any]:
    codes = ", ".join(_CODES[status])
    return {
        "description": f"Error: {codes}.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
