"""HEAD wherever GET works (RFC 9110 9.3.2): the GET answer's status and headers, no body.

FastAPI routes answer only the methods they declare, so a HEAD to a GET route was a 405. This
middleware runs a HEAD as the GET it stands for and drops the body on the way out, so every GET
route, mount and page answers HEAD alike, with the same Content-Length.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the final (empty) body message ends the answer
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
