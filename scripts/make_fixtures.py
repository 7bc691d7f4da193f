"""Regenerate tests/fixtures: speech from libespeak-ng with phoneme timings, and a face photo.

Needs the Debian package espeak-ng (libespeak-ng1). The outputs are committed so tests need no
apt package: run this only to change the fixtures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import sys
import wave
from pathlib import Path

import matplotlib
import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
TEXT = (
    "Bob and Mimi bought a big blue boat. "
    "Peter sees me, we moved to the moon. "
    "Maybe people keep a map by the pool."
)

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
EVENT_PHONEME = 7
EVENT_MSG_TERMINATED = 6
EVENT_LIST_TERMINATED = 0
POS_CHARACTER = 1
CHARS_AUTO = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def synthesise(text: str) -> tuple[np.ndarray, int, list[dict[str, object]]]:
    name = ctypes.util.find_library("espeak-ng")
    if name is None:
        sys.exit("libespeak-ng not found: apt-get install espeak-ng")
    lib = ctypes.CDLL(name)
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, None, INITIALIZE_PHONEME_EVENTS)
    chunks: list[np.ndarray] = []
    events: list[tuple[int, str]] = []

    def on_audio(wav: ctypes._Pointer, count: int, ev: ctypes._Pointer) -> int:  # type: ignore[type-arg]
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while ev[i].type != EVENT_LIST_TERMINATED:
            if ev[i].type == EVENT_PHONEME:
                events.append((ev[i].sample, ev[i].id.string.decode("ascii", "replace")))
            i += 1
        return 0

    callback = _Callback(on_audio)
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName(b"en")
    lib.espeak_SetParameter(1, 150, 0)  # words per minute
    data = text.encode()
    lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_AUTO, None, None)
    lib.espeak_Synchronize()
    pcm = np.concatenate(chunks).astype(np.int16)
    phonemes = []
    for (start, ph), nxt in zip(events, [*events[1:], (len(pcm), "")], strict=True):
        if ph.strip():
            phonemes.append({"phoneme": ph, "start_s": start / rate, "end_s": nxt[0] / rate})
    return pcm, rate, phonemes


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    pcm, rate, phonemes = synthesise(TEXT)
    with wave.open(str(FIXTURES / "speech.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    meta = {"text": TEXT, "sample_rate": rate, "phonemes": phonemes}
    (FIXTURES / "speech_phonemes.json").write_text(json.dumps(meta, indent=1) + "\n")
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    shutil.copyfile(photo, FIXTURES / "face.jpg")
    print(f"speech.wav: {len(pcm) / rate:.2f} s at {rate} Hz, {len(phonemes)} phonemes")


if __name__ == "__main__":
    main()
