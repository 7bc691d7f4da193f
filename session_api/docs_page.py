"""/docs: Swagger UI with its files served by this process from an installed package.

No CDN: the page works without network access and under a strict Content-Security-Policy
(session_api.security_headers): no inline script, its one line of set-up is /docs/init.js.
The files come from the `fastapi-offline` package (Swagger UI 5, which reads OpenAPI 3.1).
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""
_INIT = """window.ui = SwaggerUIBundle({{
  url: {openapi_url},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
"""


def swagger_dist() -> Path:
    """The directory of the installed Swagger UI files."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    """GET /docs, /docs/init.js and /docs/assets/* (create the app with docs_url=None)."""
    page = _PAGE.format(title=app.title, assets=ASSETS_URL)
    init = _INIT.format(openapi_url=json.dumps(openapi_url))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(init, media_type="text/javascript")

    app.mount(ASSETS_URL, StaticFiles(directory=swagger_dist()), name="docs-assets")
