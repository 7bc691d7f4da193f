"""What we accept, judged from content: audio (wav, mp3, ogg, webm) and images (png, jpeg, webp)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import math
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from renderer.errors import RendererInputError, UnsupportedMediaError
from renderer.face import FaceAsset
from renderer.image_io import decode_peak_bytes, sniff_image_format
from renderer.options import RendererOptions
from session_api.slots import Slots

AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "webm": "audio/webm"}
IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class MediaRejected(Exception):
    """Empty, undecodable or faceless media: a 400 invalid_input. str() is user-facing."""


class MediaUnsupported(Exception):
    """Not a format we take: a 415. str() is user-facing."""


def sniff_audio_format(head: bytes) -> str | None:
    """'wav' | 'mp3' | 'ogg' | 'webm' from the first bytes; None for anything else."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM / Matroska
        return "webm"
    if head[:3] == b"ID3":
        return "mp3"
    # MPEG audio frame sync: 11 set bits, and a layer other than 00 (which would be AAC/ADTS).
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and (head[1] >> 1) & 3:
        return "mp3"
    return None


MIN_SAMPLE_RATE = 8000  # Hz: below it there is no speech to see, only a long file


def check_audio(path: Path, *, max_seconds: float) -> float:
    """Decode the audio, up to `max_seconds` of it; returns its duration in seconds.

    Refused (MediaRejected): no audio stream, no samples, a sample rate under 8 kHz, a declared
    duration past `max_seconds`, or more than `max_seconds` decoded, whatever the header says
    (a low-bitrate MP3, or a WAV whose header lies, decodes to far more than it declares).
    Decoding stops at the limit, so the work is bounded by it. Blocking (PyAV): call it in a
    thread.
    """
    import av

    too_long = MediaRejected(f"audio is longer than the {max_seconds:g} s limit")
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise MediaRejected("audio file has no audio stream")
            stream = container.streams.audio[0]
            _check_rate(stream.rate or stream.codec_context.sample_rate)
            if _declared_seconds(container, stream) > max_seconds:
                raise too_long
            seconds = 0.0
            for frame in container.decode(stream):
                _check_rate(frame.sample_rate)
                seconds += frame.samples / frame.sample_rate
                if seconds > max_seconds:
                    raise too_long
            if seconds == 0:
                raise MediaRejected("audio file contains no samples")
            return seconds
    except MediaRejected:
        raise
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise MediaRejected("audio file could not be decoded") from exc


def _check_rate(rate: int | None) -> None:
    if not rate or rate < MIN_SAMPLE_RATE:
        raise MediaRejected(f"audio must be sampled at {MIN_SAMPLE_RATE // 1000} kHz or more")


def _declared_seconds(container: Any, stream: Any) -> float:
    """The longest duration the file declares (0.0 when it declares none)."""
    declared = 0.0
    if stream.duration and stream.time_base:
        declared = float(stream.duration * stream.time_base)
    if container.duration:
        declared = max(declared, container.duration / 1_000_000)
    return declared


# A photo check takes one slot per this much of its peak memory (see decode_peak_bytes).
DECODE_SLOT_BYTES = 150 * 1024 * 1024

# One gate per event loop (tests run several): photos decoded at once, whatever the route.
_decode_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Slots] = (
    weakref.WeakKeyDictionary()
)


async def check_image_bounded(path: Path, options: RendererOptions, *, slots: int) -> None:
    """check_image in a thread, within `slots` x 150 MB of decoding at once in this process.

    A check takes one slot per 150 MB its photo's decode will need (a 4096 px WebP takes two), so
    uploads that arrive together wait their turn instead of adding up (the API's memory limit is
    1 GiB). The estimate reads only the header.
    """
    loop = asyncio.get_running_loop()
    gate = _decode_slots.get(loop)
    if gate is None:
        gate = _decode_slots[loop] = Slots(max(1, slots))
    peak = await asyncio.to_thread(_peak_bytes, path)
    async with gate.hold(math.ceil(peak / DECODE_SLOT_BYTES)):
        try:
            await asyncio.to_thread(check_image, path, options)
        finally:
            await asyncio.to_thread(_release_freed_memory)


def _peak_bytes(path: Path) -> int:
    with path.open("rb") as file:
        return decode_peak_bytes(file.read())


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them per thread arena otherwise, so a
    burst of decodes would leave the process at its peak for good). No-op off glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def check_image(path: Path, options: RendererOptions) -> None:
    """Decode the photo and find a face in it. Blocking: call it in a thread."""
    data = path.read_bytes()
    if sniff_image_format(data[:16]) is None:
        raise MediaUnsupported("Unsupported image format: use PNG, JPEG or WebP.")
    try:
        FaceAsset.prepare(data, options=options)
    except UnsupportedMediaError as exc:
        raise MediaUnsupported(str(exc)) from exc
    except RendererInputError as exc:
        raise MediaRejected(str(exc)) from exc
