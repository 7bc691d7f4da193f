"""Security headers on every answer (pure ASGI middleware).

- `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` everywhere;
- `Cache-Control: no-store` on every answer that sets no Cache-Control of its own: API answers
  carry signed download URLs (job results) and LiveKit tokens (realtime creates), which no
  shared or browser cache may keep. Pages and files that choose their own caching keep it;
- a Content-Security-Policy on the HTML pages: /docs (Swagger UI, served from this process)
  and /demo (the demo page, which also talks to LiveKit over WebSockets and plays media).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "connect-src 'self' blob: ws: wss: http: https:; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_CSP_BY_PREFIX = (("/docs", DOCS_CSP), ("/demo", DEMO_CSP))


def csp_for(path: str) -> str | None:
    for prefix, policy in _CSP_BY_PREFIX:
        if path == prefix or path.startswith(prefix + "/"):
            return policy
    return None


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = csp_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Cache-Control", "no-store")
                if policy is not None:
                    headers.setdefault("Content-Security-Policy", policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)
