"""Who is calling the demo broker, and what they may do: the pieces that make it safe to expose.

- `visitor_of`: the client IP, from the socket, or from X-Forwarded-For when the socket is a
  trusted proxy (ATLAS_DEMO_TRUSTED_PROXIES); limits are per visitor.
- `check_same_origin`: browsers name the page that sent a request (Origin, Sec-Fetch-Site); a
  page of another site is refused, so no one can start sessions on the operator's key through a
  visitor's browser (a multipart POST needs no CORS preflight).
- `IdCookie`: a signed cookie listing the session and job ids this browser created; the broker
  acts on no other id, although all visitors share one API key.
- `capped_body`: a request body read as it streams, under a size cap and the same idle and total
  timeouts as the API's uploads (`session_api.uploads`), so a slow or huge body is refused early.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

from fastapi import Request

from session_api.errors import Forbidden, PayloadTooLarge
from session_api.uploads import _timed

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
COOKIE = "atlas_demo_ids"
MAX_COOKIE_IDS = 8  # the newest ids a browser keeps: a few sessions and jobs
CROSS_SITE = frozenset({"cross-site", "same-site"})  # same-site: another subdomain, not this page


def parse_networks(values: Sequence[str]) -> list[IpNetwork]:
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values]


def within(address: str, networks: Sequence[IpNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def visitor_of(request: Request, trusted_proxies: Sequence[IpNetwork]) -> str:
    """The client's IP: the right-most X-Forwarded-For hop that is not a trusted proxy.

    Without trusted proxies (the default) only the socket's peer counts: a header anyone can set
    must not choose which visitor's limits apply.
    """
    peer = request.client.host if request.client else "unknown"
    if not within(peer, trusted_proxies):
        return peer
    header = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [hop.strip() for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not within(hop, trusted_proxies):
            return hop
        peer = hop
    return peer


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_same_origin(request: Request, *, allowed_origins: Sequence[str], trust_host: str) -> None:
    """403 unless the request comes from this site's own pages (or from no browser page at all).

    `trust_host` is the host the page is served at (the Host header, or X-Forwarded-Host behind
    a trusted proxy): an Origin with that host, or one of `allowed_origins`, is this site.
    """
    if request.headers.get("sec-fetch-site", "").lower() in CROSS_SITE:
        raise Forbidden("Cross-site requests to the demo broker are refused.")
    origin = request.headers.get("origin")
    if origin is None:
        return  # not sent by a browser page (curl, a server): per-visitor limits still apply
    if origin.lower() in {_origin_of(o) for o in allowed_origins}:
        return
    if urlsplit(origin).netloc.lower() == trust_host.lower() and trust_host:
        return
    raise Forbidden("Cross-site requests to the demo broker are refused.")


class IdCookie:
    """The ids one browser created, in a cookie signed with the server's secret (HMAC-SHA256)."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"atlas-demo-ids\0" + secret.encode()).digest()

    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, "sha256").digest()).decode()

    def read(self, request: Request) -> list[str]:
        raw = request.cookies.get(COOKIE, "")
        payload_b64, _, signature = raw.partition(".")
        try:
            payload = base64.urlsafe_b64decode(payload_b64.encode())
        except ValueError:
            return []
        if not signature or not hmac.compare_digest(signature, self._sign(payload)):
            return []
        try:
            ids = json.loads(payload)
        except ValueError:
            return []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []

    def value_with(self, request: Request, new_id: str) -> str:
        ids = [i for i in self.read(request) if i != new_id] + [new_id]
        payload = json.dumps(ids[-MAX_COOKIE_IDS:], separators=(",", ":")).encode()
        return f"{base64.urlsafe_b64encode(payload).decode()}.{self._sign(payload)}"


async def capped_body(
    request: Request, *, max_bytes: int, idle_timeout_s: float, total_timeout_s: float
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; 413 past `max_bytes`, 408 when it stalls (uploads.py)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body exceeds {max_bytes} bytes.")
    total = 0
    async for chunk in _timed(request.stream(), idle_timeout_s, total_timeout_s):
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"The body exceeds {max_bytes} bytes.")
        yield chunk


async def read_capped(
    request: Request, *, max_bytes: int, idle_timeout_s: float, total_timeout_s: float
) -> bytes:
    body = bytearray()
    async for chunk in capped_body(
        request, max_bytes=max_bytes, idle_timeout_s=idle_timeout_s, total_timeout_s=total_timeout_s
    ):
        body += chunk
    return bytes(body)
