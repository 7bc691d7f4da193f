"""Where the worker gets face photos: a pluggable FaceSource.

A FaceSource turns a FaceRef (an HTTPS `url` or a `storage_key`) into image bytes, bounded in
size. Two implementations ship:

- HttpFaceSource: streams an HTTPS URL (http:// only when allowed, for development) and stops
  at `max_bytes`;
- FileFaceSource: resolves `storage_key` under a local directory (the API's default
  file://<data dir>/storage), refusing keys that escape it.

RoutingFaceSource sends each ref to the one that handles it. To store faces elsewhere (S3, a
CDN, a database), implement `fetch(ref) -> bytes` and `aclose()` and pass it to the worker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import httpx

from agent.metadata import FaceRef


class FaceFetchError(Exception):
    """The face could not be fetched (missing, too large, refused). Safe to log."""


class FaceSource(Protocol):
    async def fetch(self, ref: FaceRef) -> bytes: ...

    async def aclose(self) -> None: ...


class HttpFaceSource:
    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_s: float = 10.0,
        allow_http: bool = False,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._max_bytes = max_bytes
        self._allow_http = allow_http
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=True)
        self._deadline_s = timeout_s  # for the whole fetch: httpx's timeout bounds each read

    async def fetch(self, ref: FaceRef) -> bytes:
        if ref.url is None:
            raise FaceFetchError("face has no url")
        scheme = httpx.URL(ref.url).scheme
        if scheme != "https" and not (self._allow_http and scheme == "http"):
            raise FaceFetchError("face url must be https")
        try:
            async with (
                asyncio.timeout(self._deadline_s),
                self._client.stream("GET", ref.url) as response,
            ):
                if response.status_code != 200:
                    raise FaceFetchError(f"face url answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                    raise FaceFetchError("face image is larger than the limit")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise FaceFetchError("face image is larger than the limit")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise FaceFetchError(f"face url could not be fetched ({type(exc).__name__})") from exc
        except TimeoutError as exc:  # a server that drips its bytes
            raise FaceFetchError("face url took longer than the fetch deadline") from exc
        if size == 0:
            raise FaceFetchError("face image is empty")
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class FileFaceSource:
    def __init__(self, *, root: Path, max_bytes: int) -> None:
        self._root = root.resolve()
        self._max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if not path.is_relative_to(self._root) or path == self._root:
            raise FaceFetchError("face storage key is outside the face store")
        return path

    async def fetch(self, ref: FaceRef) -> bytes:
        if ref.storage_key is None:
            raise FaceFetchError("face has no storage_key")
        path = self._path(ref.storage_key)
        return await asyncio.to_thread(self._read, path)

    def _read(self, path: Path) -> bytes:
        try:
            with path.open("rb") as handle:
                data = handle.read(self._max_bytes + 1)
        except FileNotFoundError as exc:
            raise FaceFetchError("face not found in the face store") from exc
        except OSError as exc:
            raise FaceFetchError("face could not be read from the face store") from exc
        if len(data) > self._max_bytes:
            raise FaceFetchError("face image is larger than the limit")
        if not data:
            raise FaceFetchError("face image is empty")
        return data

    async def aclose(self) -> None:
        return None


class RoutingFaceSource:
    """URLs to one source, storage keys to another."""

    def __init__(self, *, urls: FaceSource, storage: FaceSource | None) -> None:
        self._urls = urls
        self._storage = storage

    async def fetch(self, ref: FaceRef) -> bytes:
        if ref.url is not None:
            return await self._urls.fetch(ref)
        if self._storage is None:
            raise FaceFetchError("no face store is configured for storage keys")
        return await self._storage.fetch(ref)

    async def aclose(self) -> None:
        await self._urls.aclose()
        if self._storage is not None:
            await self._storage.aclose()
