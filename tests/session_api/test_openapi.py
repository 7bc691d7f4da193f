"""The OpenAPI document states the real contract: error responses, the upload body, HEAD."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .api_support import Api, auth
from .test_api_errors import assert_error


@pytest.fixture
async def api(
    make_settings: Callable[..., Any], open_api: Callable[..., Any]
) -> AsyncIterator[Api]:
    async with open_api(make_settings(), background=False) as api:
        yield api


@pytest.fixture
async def schema(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = schema["paths"][path][method]
    return op


def test_generate_documents_its_multipart_body(schema: dict[str, Any]) -> None:
    body = operation(schema, "post", "/v1/generate")["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]["schema"]
    assert set(form["required"]) == {"audio", "image"}
    for name in ("audio", "image"):
        assert form["properties"][name] == {**form["properties"][name], "format": "binary"}


def test_every_operation_documents_its_errors_in_the_one_shape(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "message"}
    assert "HTTPValidationError" not in str(schema)
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            errors = {s: r for s, r in op["responses"].items() if int(s) >= 400}
            assert errors, (method, path)
            for response in errors.values():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error"


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/v1/generate", {"400", "401", "403", "408", "413", "415", "422", "429", "503"}),
        ("get", "/v1/jobs", {"401", "403", "422", "429"}),
        ("get", "/v1/jobs/{job_id}", {"401", "404"}),
        ("get", "/v1/jobs/{job_id}/result", {"404", "409", "500"}),
        ("post", "/v1/realtime/session", {"400", "401", "413", "503"}),
    ],
)
def test_documented_statuses(
    schema: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    assert statuses <= set(operation(schema, method, path)["responses"])


async def test_answers_match_the_document(api: Api, schema: dict[str, Any]) -> None:
    key = await api.new_key()
    cases = [
        ("get", "/v1/jobs", "/v1/jobs", {}, 401),
        ("get", "/v1/jobs", "/v1/jobs?limit=1000", auth(key.key), 422),
        ("get", "/v1/jobs/{job_id}", "/v1/jobs/nope", auth(key.key), 404),
        ("post", "/v1/generate", "/v1/generate", auth(key.key), 415),
    ]
    for method, path, url, headers, status in cases:
        response = await api.client.request(method.upper(), url, headers=headers)
        assert response.status_code == status
        assert str(status) in operation(schema, method, path)["responses"]
        assert_error(response, status, response.json()["error"])


async def test_head_health_is_200(api: Api) -> None:
    response = await api.client.head("/v1/health")
    assert response.status_code == 200
    assert "head" in (await api.client.get("/openapi.json")).json()["paths"]["/v1/health"]
