"""Passthrough mode: the client's microphone track, cut into speech segments, as an AudioReceiver.

SpeechGate segments by silence on media time (sample counts, not the wall clock): a segment
opens when a chunk is louder than `open_db` and ends once `hangover_s` of quieter audio has
passed; `preroll_s` of audio before the opening chunk is kept so that onsets are not clipped.
Silence between segments is dropped, so the avatar rests (blinks, breathes) instead of
mouthing room noise.

ParticipantAudioReceiver follows one participant (the client) and speaks exactly one of its
audio tracks, chosen by this rule (agent/README.md, "Which track the avatar speaks"):

1. the most recently published audio track whose source is not the microphone (the TTS track
   that a client publishes to make the avatar talk, as the spec's `publishAudio` does; a
   screen share's audio counts too), while one is published;
2. otherwise the microphone.

The rule is stateless: it looks only at the tracks published now, so what was published
before (a screen share that ended, the page before a reload) changes nothing. Other
participants' tracks are never spoken. The choice is made again whenever one of the client's
audio tracks is subscribed or unsubscribed, and through the client leaving and coming back;
switching tracks ends the open segment.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import utils
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd

from agent.tasks import TaskOwner

logger = logging.getLogger("agent")

_EPS = 1e-6  # float sums of 10 ms chunks

AudioStreamFactory = Callable[[rtc.Track], AsyncIterator[rtc.AudioFrameEvent]]


@dataclass(frozen=True, slots=True, kw_only=True)
class GateOptions:
    open_db: float = -45.0  # dBFS RMS of a chunk that opens (or keeps open) a segment
    hangover_s: float = 0.5  # quiet audio that ends a segment
    # Audio kept from before the opening chunk. The whole segment plays that much behind the
    # client's voice, so it is glass-to-glass latency: enough for a soft onset, no more.
    preroll_s: float = 0.06


class SpeechGate:
    """Chunks in, (chunks to forward, whether a segment just ended) out."""

    def __init__(self, options: GateOptions | None = None) -> None:
        self.options = options or GateOptions()
        self._preroll: deque[rtc.AudioFrame] = deque()
        self._preroll_s = 0.0
        self._open = False
        self._quiet_s = 0.0

    @property
    def is_open(self) -> bool:
        return self._open

    def push(self, frame: rtc.AudioFrame) -> tuple[list[rtc.AudioFrame], bool]:
        loud = _level_db(frame) > self.options.open_db
        if not self._open:
            if not loud:
                self._remember(frame)
                return [], False
            self._open, self._quiet_s = True, 0.0
            out = [*self._preroll, frame]
            self._preroll.clear()
            self._preroll_s = 0.0
            return out, False
        self._quiet_s = 0.0 if loud else self._quiet_s + frame.duration
        if self._quiet_s >= self.options.hangover_s - _EPS:
            self._open = False
            return [frame], True
        return [frame], False

    def end(self) -> bool:
        """The track went away: close an open segment. True if one was open."""
        was_open, self._open = self._open, False
        self._preroll.clear()
        self._preroll_s = 0.0
        return was_open

    def _remember(self, frame: rtc.AudioFrame) -> None:
        self._preroll.append(frame)
        self._preroll_s += frame.duration
        keep = self.options.preroll_s - _EPS
        while self._preroll and self._preroll_s - self._preroll[0].duration >= keep:
            self._preroll_s -= self._preroll.popleft().duration


def _level_db(frame: rtc.AudioFrame) -> float:
    # one conversion and one dot product: 4 us a chunk instead of 16 (it runs 50 times a
    # second per session, holding the GIL that every session of the process shares)
    pcm = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64)
    if pcm.size == 0:
        return -120.0
    power = float(pcm @ pcm) / (pcm.size * 32768.0**2)
    return 10.0 * math.log10(power + 1e-12)


# The client's audio in 20 ms frames, not WebRTC's 10 ms: every frame is one hop to the render
# thread, so this halves the hops, for at most 10 ms more wait before a video frame's audio
# (its 40 ms slice and 10 ms of lookahead) is all there.
FRAME_MS = 20


def _default_stream(sample_rate: int) -> AudioStreamFactory:
    def factory(track: rtc.Track) -> AsyncIterator[rtc.AudioFrameEvent]:
        return rtc.AudioStream.from_track(
            track=track, sample_rate=sample_rate, num_channels=1, frame_size_ms=FRAME_MS
        )

    return factory


class ParticipantAudioReceiver(AudioReceiver):
    def __init__(
        self,
        room: rtc.Room,
        *,
        participant_identity: str,
        sample_rate: int = 24000,
        gate: GateOptions | None = None,
        stream_factory: AudioStreamFactory | None = None,
    ) -> None:
        super().__init__()
        self._room = room
        self._identity = participant_identity
        self._gate = SpeechGate(gate)
        self._stream_factory = stream_factory or _default_stream(sample_rate)
        self._data_ch = utils.aio.Chan[rtc.AudioFrame | AudioSegmentEnd]()
        self._reader: asyncio.Task[None] | None = None
        self._reader_track_sid: str | None = None
        self._readers = TaskOwner("passthrough")  # the current one, and cancelled ones
        # the client's subscribed audio tracks: sid -> (order of arrival, is_mic, track)
        self._tracks: dict[str, tuple[int, bool, rtc.Track]] = {}
        self._arrivals = 0
        self._started = False
        self.segments = 0

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._room.on("track_subscribed", self._on_track_subscribed)
        self._room.on("track_unsubscribed", self._on_track_unsubscribed)
        self._room.on("participant_disconnected", self._on_participant_disconnected)
        participant = self._room.remote_participants.get(self._identity)
        if participant is not None:
            for publication in participant.track_publications.values():
                track = publication.track
                if track is not None and track.kind == rtc.TrackKind.KIND_AUDIO:
                    self._add(track, publication)
            self._choose()

    # -- AudioReceiver ----------------------------------------------------------------------

    def notify_playback_started(self) -> None:
        return None  # a microphone has no one to tell

    def notify_playback_finished(self, playback_position: float, interrupted: bool) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]:
        return self._data_ch

    async def aclose(self) -> None:
        self._room.off("track_subscribed", self._on_track_subscribed)
        self._room.off("track_unsubscribed", self._on_track_unsubscribed)
        self._room.off("participant_disconnected", self._on_participant_disconnected)
        await self._stop_reader()
        self._data_ch.close()

    # -- room events ------------------------------------------------------------------------

    def _on_track_subscribed(
        self, track: rtc.Track, publication: Any, participant: rtc.RemoteParticipant
    ) -> None:
        if participant.identity == self._identity and track.kind == rtc.TrackKind.KIND_AUDIO:
            self._add(track, publication)
            self._choose()

    def _on_track_unsubscribed(
        self, track: rtc.Track, publication: Any, participant: rtc.RemoteParticipant
    ) -> None:
        if participant.identity == self._identity and publication.sid in self._tracks:
            del self._tracks[publication.sid]
            logger.info("client audio track unsubscribed", extra={"track_sid": publication.sid})
            self._choose()

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self._identity:
            self._tracks.clear()
            self._detach()

    # -- which track ------------------------------------------------------------------------

    def _add(self, track: rtc.Track, publication: Any) -> None:
        is_mic = getattr(publication, "source", None) == rtc.TrackSource.SOURCE_MICROPHONE
        self._arrivals += 1
        self._tracks[publication.sid] = (self._arrivals, is_mic, track)
        logger.info(
            "client audio track subscribed",
            extra={"track_sid": publication.sid, "microphone": is_mic},
        )

    def _choose(self) -> None:
        """Follow the track the rule picks (module docstring); none: stop reading."""
        tts = [(order, sid) for sid, (order, is_mic, _) in self._tracks.items() if not is_mic]
        mics = [(order, sid) for sid, (order, is_mic, _) in self._tracks.items() if is_mic]
        candidates = tts or mics
        chosen = max(candidates)[1] if candidates else None
        if chosen == self._reader_track_sid:
            return
        if chosen is None:
            self._detach()
            return
        logger.info("speaking the client's track", extra={"track_sid": chosen})
        self._follow(self._tracks[chosen][2], chosen)

    # -- readers ----------------------------------------------------------------------------

    def _follow(self, track: rtc.Track, track_sid: str) -> None:
        self._detach()
        self._reader_track_sid = track_sid
        self._reader = self._readers.spawn(self._read(self._stream_factory(track)), name="read")

    def _detach(self) -> None:
        """Stop reading the current track now; its open segment (if any) ends."""
        reader, self._reader, self._reader_track_sid = self._reader, None, None
        if reader is not None:
            reader.cancel()  # its owner waits for it at close
        if self._gate.end():
            self._send_end()

    async def _stop_reader(self) -> None:
        self._reader = None
        await self._readers.aclose()

    async def _read(self, stream: AsyncIterator[rtc.AudioFrameEvent]) -> None:
        try:
            async for event in stream:
                frames, ended = self._gate.push(event.frame)
                for frame in frames:
                    self._data_ch.send_nowait(frame)
                if ended:
                    self._send_end()
        except utils.aio.ChanClosed:
            return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _send_end(self) -> None:
        self.segments += 1
        if not self._data_ch.closed:
            self._data_ch.send_nowait(AudioSegmentEnd())
