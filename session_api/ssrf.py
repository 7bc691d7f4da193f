"""The SSRF-safe outbound request, shared by webhooks and realtime face_url fetches.

A URL must be HTTPS and name a host without credentials. Its host is resolved, and every address
must be public (or in an operator's allow-list): loopback, private, link-local, reserved and
metadata addresses are refused, and so are IPv6 forms that embed such an IPv4 address
(IPv4-mapped and -compatible, NAT64, 6to4, Teredo). The connection then goes to the address that
was checked (no second lookup to rebind), with the original Host and SNI. Redirects are not
followed here: callers check each hop again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_CHARS = 2048
MAX_REDIRECTS = 3
_METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)
# IPv6 ranges whose low 32 bits are an IPv4 address (RFC 4291 "IPv4-compatible", RFC 6052 NAT64).
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# The local-use NAT64 prefix (RFC 8215) embeds IPv4 at an operator-chosen place: refuse it whole.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class UrlRefused(Exception):
    """The URL, or an address it resolves to, is not allowed. str() is user-facing."""


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)  # (server, client): both must pass
    if ip in _IPV4_COMPATIBLE or ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def address_allowed(ip: IPAddress, allow: Sequence[Network] = ()) -> bool:
    if any(ip in net for net in allow if net.version == ip.version):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        inner = embedded_ipv4(ip)
        if inner:  # judged by what it reaches, whatever Python thinks of the wrapper
            return all(address_allowed(v4, allow) for v4 in inner)
    if any(ip in net for net in _METADATA if net.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast


def _split(url: str, label: str) -> tuple[SplitResult, str, int | None]:
    """urlsplit that turns malformed hosts and ports ('[::1', '[zzz]', ':99999') into refusals."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"{label} is not a valid URL.") from exc
    return parts, host or "", port


def check_url(url: str, allow: Sequence[Network] = (), *, label: str = "Callback URL") -> str:
    """Static checks before any request: HTTPS, a host, no literal internal address."""
    if len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"{label} exceeds 2048 characters.")
    parts, host, _ = _split(url, label)
    if parts.scheme != "https":
        raise UrlRefused(f"{label} must use HTTPS.")
    if not host or parts.username or parts.password:
        raise UrlRefused(f"{label} must name a host and carry no credentials.")
    lowered = host.lower()
    if lowered in {"localhost", "localhost.localdomain"} or lowered.endswith(".localhost"):
        if not allow:
            raise UrlRefused(f"{label} must not point to localhost.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return url
    if not address_allowed(literal, allow):
        raise UrlRefused(f"{label} must not point to a private or internal address.")
    return url


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    seen: list[str] = []
    for family, *_rest, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in seen:
            seen.append(str(sockaddr[0]))
    return seen


async def send_pinned(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    allow: Sequence[Network],
    resolver: Resolver,
    headers: dict[str, str],
    content: bytes | None = None,
    stream: bool = False,
    label: str = "Callback URL",
) -> httpx.Response:
    """One request (no redirects followed) to an address checked after DNS resolution.

    With `stream`, the caller reads and closes the response. Raises UrlRefused, or httpx errors
    when the host cannot be resolved or reached.
    """
    check_url(url, allow, label=label)
    parts, host, explicit_port = _split(url, label)
    port = explicit_port or 443
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise httpx.ConnectError("name resolution failed") from exc
    try:
        ips = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    except ValueError as exc:
        raise UrlRefused(f"{label} host resolves to a refused address.") from exc
    if not ips or not all(address_allowed(ip, allow) for ip in ips):
        raise UrlRefused(f"{label} host resolves to a refused address.")
    ips.sort(key=lambda ip: ip.version)  # IPv4 first
    host_header = host if explicit_port is None else f"{host}:{explicit_port}"
    last_error: Exception | None = None
    for ip in ips:
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        pinned = urlunsplit(("https", f"{literal}:{port}", parts.path or "/", parts.query, ""))
        request = client.build_request(
            method,
            pinned,
            content=content,
            headers={**headers, "Host": host_header},
            extensions={"sni_hostname": host},
        )
        try:
            return await client.send(request, stream=stream)
        except httpx.ConnectError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error
