"""Stream a multipart body to temporary files under a combined size cap and time limits.

Each part goes straight from the socket to disk; nothing holds a whole upload in memory, and
the request is refused (413) as soon as the running total passes the cap. A client that stops
sending for `idle_timeout_s`, or takes longer than `total_timeout_s` in all, is answered 408 and
its connection closed; the caller's temp dir goes with the request.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from session_api.errors import (
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationFailed,
)

MAX_PARTS = 16
MAX_HEADER_BYTES = 8 * 1024
HEAD_BYTES = 64  # kept from each part for format sniffing
IDLE_TIMEOUT_S = 30.0
TOTAL_TIMEOUT_S = 600.0


@dataclass(slots=True)
class UploadedPart:
    name: str
    filename: str | None
    content_type: str | None
    path: Path
    size: int = 0
    head: bytes = b""


@dataclass(slots=True)
class _PartState:
    headers: dict[str, str] = field(default_factory=dict)
    field_name: bytes = b""
    field_value: bytes = b""
    header_bytes: int = 0
    part: UploadedPart | None = None
    file: IO[bytes] | None = None


class UploadSink:
    """python-multipart callbacks that write parts to files in `directory`."""

    def __init__(self, *, directory: Path, max_total: int, wanted: frozenset[str]) -> None:
        self.directory = directory
        self.max_total = max_total
        self.wanted = wanted
        self.total = 0
        self.parts: dict[str, UploadedPart] = {}
        self._count = 0
        self._state = _PartState()

    # --- python-multipart callbacks ---------------------------------------------------------
    def on_part_begin(self) -> None:
        self._count += 1
        if self._count > MAX_PARTS:
            raise ValidationFailed("Too many form fields.")
        self._state = _PartState()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(end - start)
        self._state.field_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(end - start)
        self._state.field_value += data[start:end]

    def on_header_end(self) -> None:
        state = self._state
        state.headers[state.field_name.decode("latin-1").lower()] = state.field_value.decode(
            "latin-1"
        )
        state.field_name, state.field_value = b"", b""

    def on_headers_finished(self) -> None:
        state = self._state
        _, options = parse_options_header(state.headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name in self.wanted and name not in self.parts:
            path = self.directory / f"part-{self._count}"
            state.part = UploadedPart(
                name=name,
                filename=filename.decode("utf-8", "replace") if filename is not None else None,
                content_type=state.headers.get("content-type"),
                path=path,
            )
            state.file = path.open("wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        self.total += size
        if self.total > self.max_total:
            raise PayloadTooLarge()
        part = self._state.part
        if part is None or self._state.file is None:
            return  # a field we do not use: counted, not kept
        chunk = data[start:end]
        if len(part.head) < HEAD_BYTES:
            part.head += chunk[: HEAD_BYTES - len(part.head)]
        self._state.file.write(chunk)
        part.size += size

    def on_part_end(self) -> None:
        state = self._state
        if state.file is not None and state.part is not None:
            state.file.close()
            state.file = None
            self.parts[state.part.name] = state.part

    def close(self) -> None:
        if self._state.file is not None:
            self._state.file.close()
            self._state.file = None

    def _grow_header(self, size: int) -> None:
        self._state.header_bytes += size
        if self._state.header_bytes > MAX_HEADER_BYTES:
            raise ValidationFailed("Multipart headers too large.")


def multipart_boundary(content_type: str | None) -> bytes:
    media, options = parse_options_header(content_type or "")
    if media != b"multipart/form-data":
        raise UnsupportedMediaType("Content-Type must be multipart/form-data.")
    boundary = options.get(b"boundary")
    if not boundary:
        raise ValidationFailed("Multipart boundary is missing.")
    return boundary


async def receive_parts(
    stream: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    directory: Path,
    max_total: int,
    wanted: frozenset[str],
    idle_timeout_s: float = IDLE_TIMEOUT_S,
    total_timeout_s: float = TOTAL_TIMEOUT_S,
) -> dict[str, UploadedPart]:
    """Parse the body into `directory`; raises 408/413/415/422 ApiErrors."""
    boundary = multipart_boundary(content_type)
    if content_length is not None and content_length.isdigit():
        # The multipart framing adds a little; the file bytes are what the cap is about.
        if int(content_length) > max_total + 64 * 1024:
            raise PayloadTooLarge()
    sink = UploadSink(directory=directory, max_total=max_total, wanted=wanted)
    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": sink.on_part_begin,
            "on_part_data": sink.on_part_data,
            "on_part_end": sink.on_part_end,
            "on_header_field": sink.on_header_field,
            "on_header_value": sink.on_header_value,
            "on_header_end": sink.on_header_end,
            "on_headers_finished": sink.on_headers_finished,
        },
    )
    try:
        async for chunk in _timed(stream, idle_timeout_s, total_timeout_s):
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise ValidationFailed("Malformed multipart body.") from exc
    finally:
        sink.close()
    return sink.parts


async def _timed(
    stream: AsyncIterator[bytes], idle_timeout_s: float, total_timeout_s: float
) -> AsyncIterator[bytes]:
    """The body's chunks, each within `idle_timeout_s`, all within `total_timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_timeout_s
    chunks = aiter(stream)
    while True:
        wait_s = min(idle_timeout_s, deadline - loop.time())
        try:
            async with asyncio.timeout(max(wait_s, 0.0)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise RequestTimeout() from exc
        yield chunk


def new_upload_dir(base: Path | None) -> tempfile.TemporaryDirectory[str]:
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="atlas-upload-", dir=base)
