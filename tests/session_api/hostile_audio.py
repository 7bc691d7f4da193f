"""Audio files built to hold a render worker for hours, made at test time (nothing shipped)."""

from __future__ import annotations

import io
import struct

import av
import numpy as np


def pcm_wav(*, rate: int, seconds: float, declared_bytes: int | None = None) -> bytes:
    """16-bit mono PCM WAV of silence; `declared_bytes` overrides the data chunk's size field."""
    data = np.zeros(round(rate * seconds), dtype=np.int16).tobytes()
    size = len(data) if declared_bytes is None else declared_bytes
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    riff = (36 + size) & 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", size)
        + data
    )


def ten_hour_8hz_wav() -> bytes:
    """The probe's file: 8-bit mono at 8 Hz, 10 hours in 288 KB."""
    samples = 8 * 36_000
    fmt = struct.pack("<HHIIHH", 1, 1, 8, 8, 1, 8)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + samples)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", samples)
        + bytes([128]) * samples
    )


def mp3_decoding_to_hours(hours: float = 2.0) -> bytes:
    """8 kbps mono MP3 at 8 kHz: 30 s encoded once, its frames repeated (1 KB a second)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=8000)
        stream.layout = "mono"
        stream.bit_rate = 8000
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 8000 * 30), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    encoded = buf.getvalue()
    if encoded[:3] == b"ID3":  # keep one tag, at the start
        tag = 10 + (encoded[6] << 21 | encoded[7] << 14 | encoded[8] << 7 | encoded[9])
        head, frames = encoded[:tag], encoded[tag:]
    else:
        head, frames = b"", encoded
    return head + frames * round(hours * 3600 / 30)


def matroska_declaring(*, declared_s: float, seconds: float) -> bytes:
    """PCM in Matroska whose Segment Duration says `declared_s` while it holds `seconds`."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, round(8000 * seconds)), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buf.getvalue())
    at = data.find(b"\x44\x89\x88")  # Duration element: 8-byte float, in milliseconds
    assert at > 0, "no Duration element to rewrite"
    data[at + 3 : at + 11] = struct.pack(">d", declared_s * 1000)
    return bytes(data)
