"""Audio is bounded at submit: ATLAS_MAX_AUDIO_SECONDS (600 s), 8 kHz at least, declared and
decoded duration both checked before the job is queued (a 400 invalid_input)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from session_api.config import Settings
from session_api.media import MediaRejected, check_audio
from tests.paths import SPEECH

from .api_support import Api, auth, upload
from .hostile_audio import matroska_declaring, mp3_decoding_to_hours, pcm_wav, ten_hour_8hz_wav
from .test_api_errors import assert_error

LIMIT = 600.0


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_ten_hour_8hz_wav_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "long.wav", ten_hour_8hz_wav())
    with pytest.raises(MediaRejected, match="8 kHz"):
        check_audio(path, max_seconds=LIMIT)


def test_an_mp3_that_decodes_to_hours_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "long.mp3", mp3_decoding_to_hours(2.0))
    assert path.stat().st_size < 8_000_000  # well inside the 50 MB upload limit
    with pytest.raises(MediaRejected, match="longer than the 600 s limit"):
        check_audio(path, max_seconds=LIMIT)


def test_a_wav_header_that_lies_about_its_length_is_refused(tmp_path: Path) -> None:
    # data size 0xFFFFFFFF ("until the end"), RIFF size wrapped: 700 s of 16 kHz behind it
    lying = pcm_wav(rate=16000, seconds=700, declared_bytes=0xFFFFFFFF)
    with pytest.raises(MediaRejected, match="longer than"):
        check_audio(write(tmp_path, "lying.wav", lying), max_seconds=LIMIT)


def test_the_decoded_length_counts_whatever_the_header_declares(tmp_path: Path) -> None:
    # The container declares 5 s; its blocks hold 660 s. Only decoding finds out.
    path = write(tmp_path, "short.mkv", matroska_declaring(declared_s=5, seconds=660))
    with pytest.raises(MediaRejected, match="longer than the 600 s limit"):
        check_audio(path, max_seconds=LIMIT)
    # the same file is fine under a limit it keeps to
    assert check_audio(path, max_seconds=700) == pytest.approx(660, abs=0.1)


def test_speech_within_the_limit_passes_with_its_duration(tmp_path: Path) -> None:
    assert 1 < check_audio(SPEECH, max_seconds=LIMIT) < 30


@pytest.fixture
async def api(
    make_settings: Callable[..., Settings], open_api: Callable[..., Any]
) -> AsyncIterator[Api]:
    async with open_api(make_settings(max_audio_seconds=2.0)) as api_:
        yield api_


@pytest.mark.parametrize("audio", ["ten_hour_8hz", "speech_past_the_setting"])
async def test_refused_before_anything_is_queued(api: Api, face_bytes: bytes, audio: str) -> None:
    data = ten_hour_8hz_wav() if audio == "ten_hour_8hz" else SPEECH.read_bytes()
    key = await api.new_key()
    response = await api.client.post(
        "/v1/generate", headers=auth(key.key), files=upload(data, face_bytes)
    )
    assert_error(response, 400, "invalid_input")
    listed = (await api.client.get("/v1/jobs", headers=auth(key.key))).json()
    assert listed["count"] == 0
    assert (await api.services.queue.depth())["pending"] == 0
