"""Realtime face photos: an upload or an HTTPS URL fetched SSRF-safe, checked for a face.

The URL fetch uses the webhook sender's checks (session_api.ssrf.send_pinned): HTTPS only,
at most 2048 characters, every resolved address public (or allow-listed), the connection pinned
to the checked address, and every redirect checked again. Bodies stream to a file under a cap.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from renderer.image_io import sniff_image_format
from renderer.options import RendererOptions
from session_api.errors import InvalidFaceUrl, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from session_api.fetch import FetchTimedOut, deadline
from session_api.media import MediaRejected, MediaUnsupported, check_image_bounded
from session_api.ssrf import (
    MAX_REDIRECTS,
    Resolver,
    UrlRefused,
    check_url,
    parse_networks,
    send_pinned,
    system_resolver,
)

LABEL = "face_url"
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class FaceFile:
    """A face photo on local disk that passed FaceChecker."""

    path: Path
    format: str  # png | jpeg | webp

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def check_face_url(value: object, allow: Sequence[str] = ()) -> str:
    """Static checks of a face_url (400 invalid_face_url); the fetch checks the rest."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidFaceUrl("face_url must be an HTTPS URL string.")
    try:
        return check_url(value.strip(), parse_networks(allow), label=LABEL)
    except UrlRefused as exc:
        raise InvalidFaceUrl(str(exc)) from exc


class FaceFetcher:
    """GETs face_url into a file, following at most 3 redirects, each one checked."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_s: float = 10.0,
        allow_networks: Sequence[str] = (),
        ca_file: str | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.allow = parse_networks(allow_networks)
        self.resolver = resolver
        verify: ssl.SSLContext | bool = True
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.AsyncClient(
            verify=verify, timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False
        )

    async def fetch(self, url: str, dest: Path) -> int:
        """Save the image at `url` to `dest`; returns its size. Raises 400/413 ApiErrors.

        The whole fetch, redirects and body included, has `timeout_s` in all.
        """
        try:
            async with deadline(self.timeout_s):
                return await self._fetch(url, dest)
        except FetchTimedOut as exc:
            raise InvalidFaceUrl(f"face_url took longer than {self.timeout_s:g} s.") from exc

    async def _fetch(self, url: str, dest: Path) -> int:
        headers = {"User-Agent": "atlas-faces/1", "Accept": "image/png,image/jpeg,image/webp"}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await send_pinned(
                    self._client,
                    "GET",
                    url,
                    allow=self.allow,
                    resolver=self.resolver,
                    headers=headers,
                    stream=True,
                    label=LABEL,
                )
            except UrlRefused as exc:
                raise InvalidFaceUrl(str(exc)) from exc
            except (httpx.HTTPError, OSError) as exc:
                raise InvalidFaceUrl("face_url could not be fetched.") from exc
            try:
                location = response.headers.get("location")
                if response.is_redirect and location:
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise InvalidFaceUrl(f"face_url answered HTTP {response.status_code}.")
                return await self._save(response, dest)
            finally:
                await response.aclose()
        raise InvalidFaceUrl("face_url redirects too many times.")

    async def _save(self, response: httpx.Response, dest: Path) -> int:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise PayloadTooLarge("Face image exceeds the 10 MB limit.")
        size = 0
        try:
            with dest.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLarge("Face image exceeds the 10 MB limit.")
                    out.write(chunk)
        except httpx.HTTPError as exc:
            raise InvalidFaceUrl("face_url could not be fetched.") from exc
        return size

    async def aclose(self) -> None:
        await self._client.aclose()


def _digest(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), data[:16]


class FaceChecker:
    """Format from content, then a face found by the renderer (FaceAsset.prepare in a thread).

    A photo already accepted (same SHA-256) is not prepared again: reused faces are the common
    case and the check costs ~30 ms of CPU. Decoding shares `concurrency` 150 MB slots in the
    process with /v1/generate's (session_api.media.check_image_bounded).
    """

    def __init__(
        self, *, options: RendererOptions, cache_size: int = 256, concurrency: int = 2
    ) -> None:
        self.options = options
        self.cache_size = cache_size
        self.concurrency = concurrency
        self._accepted: OrderedDict[str, str] = OrderedDict()

    async def check(self, path: Path, size: int) -> FaceFile:
        if size == 0:
            raise InvalidInput("The face image is empty.")
        digest, head = await asyncio.to_thread(_digest, path)
        known = self._accepted.get(digest)
        if known is not None:
            self._accepted.move_to_end(digest)
            return FaceFile(path=path, format=known)
        fmt = sniff_image_format(head)
        if fmt not in EXTENSIONS:
            raise UnsupportedMediaType("Unsupported image format: use PNG, JPEG or WebP.")
        try:
            await check_image_bounded(path, self.options, slots=self.concurrency)
        except MediaUnsupported as exc:
            raise UnsupportedMediaType(str(exc)) from exc
        except MediaRejected as exc:
            raise InvalidInput(str(exc)) from exc
        self._accepted[digest] = fmt
        while len(self._accepted) > self.cache_size:
            self._accepted.popitem(last=False)
        return FaceFile(path=path, format=fmt)
