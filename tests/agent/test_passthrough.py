"""Passthrough: the client's track (a real local audio track, read with a real AudioStream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd

from agent.passthrough import GateOptions, ParticipantAudioReceiver, SpeechGate
from tests.agent.audio_support import audio_frames, tone_bursts
from tests.agent.fakes import FakePublication, FakeRemoteParticipant, FakeRoom

RATE = 24000
CLIENT = "user-ses_test00000000"


def test_gate_cuts_segments_on_silence_with_preroll_and_hangover() -> None:
    gate = SpeechGate(GateOptions(hangover_s=0.3, preroll_s=0.1))
    silence = np.zeros(RATE, np.int16)
    pcm = np.concatenate([silence, tone_bursts(RATE, seconds=0.5, on_s=0.5, off_s=0), silence])
    out: list[float] = []
    ends = 0
    for frame in audio_frames(pcm, RATE):
        frames, ended = gate.push(frame)
        out += [f.duration for f in frames]
        ends += ended
    assert ends == 1 and not gate.is_open
    assert abs(sum(out) - (0.1 + 0.5 + 0.3)) < 1e-6  # preroll + speech + hangover


class LocalMic:
    """A real audio track fed from a real AudioSource: what the client would publish
    (`source`: unknown, as a TTS track published with publishAudio, unless told)."""

    def __init__(
        self, name: str, source: rtc.TrackSource.ValueType = rtc.TrackSource.SOURCE_UNKNOWN
    ) -> None:
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=200)
        self.track = rtc.LocalAudioTrack.create_audio_track(name, self.source)
        self.publication = FakePublication(
            track=self.track, options=rtc.TrackPublishOptions(source=source)
        )

    async def play(self, pcm: np.ndarray) -> None:
        for frame in audio_frames(pcm, RATE):
            await self.source.capture_frame(frame)

    async def aclose(self) -> None:
        await self.source.aclose()


async def next_segment(it: AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]) -> float:
    """Seconds of audio up to the next AudioSegmentEnd."""
    total = 0.0
    async for item in it:
        if isinstance(item, AudioSegmentEnd):
            return total
        total += item.duration
    raise AssertionError("the receiver closed")


async def test_follows_the_client_through_unpublish_and_reconnect() -> None:
    room = FakeRoom()
    client = FakeRemoteParticipant(identity=CLIENT)
    room.add_remote(client)
    receiver = ParticipantAudioReceiver(
        room,  # type: ignore[arg-type]
        participant_identity=CLIENT,
        sample_rate=RATE,
        gate=GateOptions(hangover_s=0.3, preroll_s=0.1),
    )
    await receiver.start()
    it = receiver.__aiter__()
    speech = tone_bursts(RATE, seconds=0.6, on_s=0.6, off_s=0)
    quiet = np.zeros(RATE // 2, np.int16)

    # 1. a segment bounded by silence; someone else's louder, longer speech is never taken,
    #    even when it arrives after the client's track
    mic = LocalMic("mic-1")
    room.emit("track_subscribed", mic.track, mic.publication, client)
    other = FakeRemoteParticipant(identity="someone-else")
    theirs = LocalMic("their-tts")
    room.emit("track_subscribed", theirs.track, theirs.publication, other)
    await theirs.play(np.concatenate([quiet, speech, speech, speech, quiet]))
    await mic.play(np.concatenate([quiet, speech, quiet]))
    seconds = await asyncio.wait_for(next_segment(it), 10)
    assert 0.6 <= seconds <= 0.6 + 0.1 + 0.3 + 0.05
    await theirs.aclose()

    # 2. the track is unpublished mid-speech: the open segment ends at once
    player = asyncio.create_task(mic.play(np.concatenate([speech, speech])))
    first = await asyncio.wait_for(anext(it), 10)
    assert isinstance(first, rtc.AudioFrame)
    room.emit("track_unsubscribed", mic.track, mic.publication, client)
    await asyncio.wait_for(next_segment(it), 10)
    await player
    await mic.aclose()

    # 3. the client leaves and comes back with a new track
    room.remove_remote(CLIENT)
    client = FakeRemoteParticipant(identity=CLIENT)
    room.add_remote(client)
    mic2 = LocalMic("mic-2")
    room.emit("track_subscribed", mic2.track, mic2.publication, client)
    await mic2.play(np.concatenate([quiet, speech, quiet]))
    seconds = await asyncio.wait_for(next_segment(it), 10)
    assert 0.6 <= seconds <= 1.05
    assert receiver.segments == 3

    await receiver.aclose()
    await mic2.aclose()


async def test_speaks_the_newest_non_microphone_track_while_there_is_one_else_the_mic() -> None:
    """agent/README.md: the newest non-microphone track wins while one is published; otherwise
    the microphone is spoken. The rule is stateless: the same after a reload."""
    room = FakeRoom()
    client = FakeRemoteParticipant(identity=CLIENT)
    room.add_remote(client)
    receiver = ParticipantAudioReceiver(
        room,  # type: ignore[arg-type]
        participant_identity=CLIENT,
        sample_rate=RATE,
        gate=GateOptions(hangover_s=0.3, preroll_s=0.1),
    )
    await receiver.start()
    it = receiver.__aiter__()
    short = tone_bursts(RATE, seconds=0.6, on_s=0.6, off_s=0)
    long = tone_bursts(RATE, seconds=1.5, on_s=1.5, off_s=0)
    quiet = np.zeros(RATE // 2, np.int16)

    # 1. the microphone alone is spoken
    mic = LocalMic("mic", rtc.TrackSource.SOURCE_MICROPHONE)
    room.emit("track_subscribed", mic.track, mic.publication, client)
    await mic.play(np.concatenate([quiet, long, quiet]))
    assert 1.5 <= await asyncio.wait_for(next_segment(it), 10) <= 1.95

    # 2. a TTS track is published: it is spoken, the (louder, longer) microphone is not
    tts = LocalMic("tts")
    room.emit("track_subscribed", tts.track, tts.publication, client)
    await mic.play(np.concatenate([quiet, long, quiet]))
    await tts.play(np.concatenate([quiet, short, quiet]))
    assert 0.6 <= await asyncio.wait_for(next_segment(it), 10) <= 1.05

    # 3. the TTS track goes (a screen share ended): the microphone is spoken again; the next
    #    TTS track is spoken instead of it
    room.emit("track_unsubscribed", tts.track, tts.publication, client)
    await mic.play(np.concatenate([quiet, long, quiet]))
    assert 1.5 <= await asyncio.wait_for(next_segment(it), 10) <= 1.95
    tts2 = LocalMic("tts-2")
    room.emit("track_subscribed", tts2.track, tts2.publication, client)
    await tts2.play(np.concatenate([quiet, short, quiet]))
    assert 0.6 <= await asyncio.wait_for(next_segment(it), 10) <= 1.05

    # 4. the microphone is republished (a client unmuting it) after the TTS track: the newest
    #    track does not win by being newest; the TTS track is still the one spoken
    room.emit("track_unsubscribed", mic.track, mic.publication, client)
    mic2 = LocalMic("mic-again", rtc.TrackSource.SOURCE_MICROPHONE)
    room.emit("track_subscribed", mic2.track, mic2.publication, client)
    await mic2.play(np.concatenate([quiet, long, quiet]))
    await tts2.play(np.concatenate([quiet, short, quiet]))
    assert 0.6 <= await asyncio.wait_for(next_segment(it), 10) <= 1.05

    # 5. a page reload: the client leaves and comes back with its microphone only; nothing
    #    from before the reload keeps the microphone silent
    room.remove_remote(CLIENT)
    client = FakeRemoteParticipant(identity=CLIENT)
    room.add_remote(client)
    mic3 = LocalMic("mic-after-reload", rtc.TrackSource.SOURCE_MICROPHONE)
    room.emit("track_subscribed", mic3.track, mic3.publication, client)
    await mic3.play(np.concatenate([quiet, long, quiet]))
    assert 1.5 <= await asyncio.wait_for(next_segment(it), 10) <= 1.95
    assert receiver.segments == 6

    await receiver.aclose()
    for local in (mic, mic2, mic3, tts, tts2):
        await local.aclose()
