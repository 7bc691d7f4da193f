"""GET /v1/files/{key}: local-storage downloads behind HMAC-signed, expiring URLs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from session_api.deps import ServicesDep
from session_api.errors import Forbidden, NoOutput
from session_api.storage import LocalStorage

router = APIRouter()

_BAD_LINK = "This download link is invalid or has expired."


@router.get("/v1/files/{key:path}", include_in_schema=False)
async def download(
    key: str,
    services: ServicesDep,
    expires: Annotated[int, Query()] = 0,
    sig: Annotated[str, Query()] = "",
) -> FileResponse:
    storage = services.storage
    if not isinstance(storage, LocalStorage) or not storage.signer.verify(key, expires, sig):
        raise Forbidden(_BAD_LINK)
    try:
        path = storage.path_of(key)
    except ValueError as exc:
        raise Forbidden(_BAD_LINK) from exc
    if not path.is_file():
        raise NoOutput()
    media_type = "video/mp4" if key.endswith(".mp4") else "application/octet-stream"
    return FileResponse(path, media_type=media_type, filename=path.name)
