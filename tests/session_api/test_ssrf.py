"""SSRF filter edge cases: malformed IPv6 URLs, and IPv6 forms that embed an internal IPv4
address (IPv4-compatible, NAT64, 6to4, Teredo), at submit time and after DNS resolution."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from session_api.config import Settings
from session_api.errors import InvalidFaceUrl
from session_api.faces import FaceFetcher
from session_api.webhooks import WebhookSender

from .api_support import Api, auth, upload
from .test_api_errors import assert_error

MALFORMED = ["https://[::1/x", "https://[zzz]/", "https://[::1]:99999/", "https://[fe80::1%25eth0/"]
# Each embeds 127.0.0.1, 10.0.0.1 or 169.254.169.254.
EMBEDDED_INTERNAL = [
    "::127.0.0.1",  # IPv4-compatible
    "::a00:1",  # IPv4-compatible, hex
    "::ffff:10.0.0.1",  # IPv4-mapped
    "64:ff9b::7f00:1",  # NAT64 (RFC 6052)
    "64:ff9b::a9fe:a9fe",  # NAT64 to the metadata address
    "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215)
    "2002:7f00:1::1",  # 6to4
    "2002:a00:1::",  # 6to4
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:a00:1:8000:63bf:3fff:fdd2",  # Teredo, server 10.0.0.1
]


@pytest.fixture
async def api(
    make_settings: Callable[..., Any], open_api: Callable[..., Any]
) -> AsyncIterator[Api]:
    async with open_api(make_settings()) as api:
        yield api


@pytest.mark.parametrize("url", MALFORMED + [f"https://[{ip}]/hook" for ip in EMBEDDED_INTERNAL])
async def test_bad_callback_urls_are_400(
    api: Api, speech_bytes: bytes, face_bytes: bytes, url: str
) -> None:
    key = await api.new_key()
    response = await api.client.post(
        "/v1/generate",
        headers={**auth(key.key), "X-Callback-URL": url},
        files=upload(speech_bytes, face_bytes),
    )
    assert_error(response, 400, "invalid_callback_url")


@pytest.mark.parametrize("url", MALFORMED + [f"https://[{ip}]/f.jpg" for ip in EMBEDDED_INTERNAL])
async def test_bad_face_urls_are_400(
    rt_settings: Callable[..., Settings], open_api: Callable[..., Any], url: str
) -> None:
    async with open_api(rt_settings(), background=False) as api:
        key = await api.new_key()
        response = await api.client.post(
            "/v1/realtime/session", headers=auth(key.key), json={"face_url": url}
        )
        body = assert_error(response, 400, "invalid_face_url")
        # Refused before any connection is tried, not merely because the connection failed.
        assert "could not be fetched" not in body["message"]


async def _resolves_to(name: str, port: int) -> list[str]:
    return [name.split(".")[0].replace("-", ":")]


def _dns_name(ip: str) -> str:
    """A host name our fake resolver answers with `ip` (':' spelled '-')."""
    return ipaddress.ip_address(ip).exploded.replace(":", "-") + ".example"


@pytest.mark.parametrize("ip", EMBEDDED_INTERNAL)
async def test_dns_answers_embedding_internal_ipv4_are_refused(tmp_path: Path, ip: str) -> None:
    from session_api.db.migrate import upgrade
    from session_api.db.session import Database

    db = Database(url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await upgrade(db)
    sender = WebhookSender(db=db, resolver=_resolves_to)
    fetcher = FaceFetcher(max_bytes=1000, resolver=_resolves_to)
    try:
        outcome = await sender.attempt(f"https://{_dns_name(ip)}/hook", "{}", "secret")
        assert not outcome.delivered and outcome.permanent, outcome.detail
        assert "refused address" in outcome.detail
        with pytest.raises(InvalidFaceUrl, match="refused address"):
            await fetcher.fetch(f"https://{_dns_name(ip)}/f.jpg", tmp_path / "f")
    finally:
        await sender.aclose()
        await fetcher.aclose()
        await db.aclose()


def test_embedded_public_ipv4_is_judged_by_what_it_reaches() -> None:
    from session_api.ssrf import address_allowed

    for ip in ["64:ff9b::808:808", "2002:808:808::1", "2606:4700:4700::1111", "8.8.8.8"]:
        assert address_allowed(ipaddress.ip_address(ip)), ip
    # An operator's allow-list still lets a tunnelled internal address through on purpose.
    allow = (ipaddress.ip_network("10.0.0.0/8"),)
    assert address_allowed(ipaddress.ip_address("64:ff9b::a00:1"), allow)
