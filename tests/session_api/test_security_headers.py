"""Security headers: nosniff everywhere, no-store on answers with signed URLs or tokens, a CSP
on /docs and /demo, and /docs served with its files from the installed package (no CDN)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from session_api.config import Settings
from session_api.docs_page import swagger_dist
from tests.fake_clock import FakeClock

from .api_support import Api, auth, upload


@pytest.fixture
async def api_rt(
    rt_settings: Callable[..., Settings], open_api: Callable[..., Any], clock: FakeClock
) -> AsyncIterator[Api]:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        yield api_


async def test_every_answer_is_nosniff(api_rt: Api) -> None:
    key = await api_rt.new_key()
    for path, headers in (
        ("/", {}),
        ("/v1/health", {}),
        ("/v1/me", auth(key.key)),
        ("/v1/jobs/nope", auth(key.key)),  # an error answer too
        ("/openapi.json", {}),
        ("/docs", {}),
    ):
        response = await api_rt.client.get(path, headers=headers)
        assert response.headers["x-content-type-options"] == "nosniff", path


async def test_a_realtime_create_with_its_token_is_not_stored(
    api_rt: Api, face_bytes: bytes
) -> None:
    key = await api_rt.new_key()
    response = await api_rt.client.post(
        "/v1/realtime/session",
        headers=auth(key.key),
        files={"face": ("face.jpg", face_bytes, "image/jpeg")},
        data={"mode": "passthrough"},
    )
    assert response.status_code == 200 and "token" in response.json()
    assert response.headers["cache-control"] == "no-store"


async def test_job_results_with_their_signed_urls_are_not_stored(
    make_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    speech_bytes: bytes,
    face_bytes: bytes,
    tmp_path: Path,
) -> None:
    async with open_api(make_settings()) as api:
        key = await api.new_key()
        submitted = await api.client.post(
            "/v1/generate", headers=auth(key.key), files=upload(speech_bytes, face_bytes)
        )
        job_id = submitted.json()["job_id"]
        # finish it as a worker would, with a stored output
        queue = api.services.queue
        assert await queue.claim("w") is not None
        output = tmp_path / "out.mp4"
        output.write_bytes(b"\0" * 64)
        await api.services.storage.put_file("o.mp4", output, content_type="video/mp4")
        done = await queue.complete(
            job_id, "w", output_key="o.mp4", output_size=64, duration=1.0, result_ttl_s=60
        )
        assert done
        detail = await api.client.get(f"/v1/jobs/{job_id}", headers=auth(key.key))
        result = await api.client.get(f"/v1/jobs/{job_id}/result", headers=auth(key.key))
        assert "sig=" in detail.json()["url"] and "sig=" in result.json()["url"]
        for response in (detail, result):
            assert response.headers["cache-control"] == "no-store"


async def test_docs_and_demo_carry_a_csp(api_rt: Api) -> None:
    docs = await api_rt.client.get("/docs")
    policy = docs.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-eval" not in policy and "script-src 'self' 'unsafe-inline'" not in policy
    demo = await api_rt.client.get("/demo")  # built or not, the answer carries the policy
    assert "script-src 'self'" in demo.headers["content-security-policy"]
    api_answer = await api_rt.client.get("/v1/health")
    assert "content-security-policy" not in api_answer.headers


async def test_docs_load_every_script_and_style_from_this_server(api_rt: Api) -> None:
    page = (await api_rt.client.get("/docs")).text
    assert "<script>" not in page  # no inline script: the CSP allows none
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert urls and all(url.startswith("/") for url in urls), urls  # nothing from a CDN
    for url in urls:
        response = await api_rt.client.get(url)
        assert response.status_code == 200, url
        assert response.content, url
    bundle = await api_rt.client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.content == (swagger_dist() / "swagger-ui-bundle.js").read_bytes()
    init = (await api_rt.client.get("/docs/init.js")).text
    assert '"/openapi.json"' in init and "SwaggerUIBundle(" in init
