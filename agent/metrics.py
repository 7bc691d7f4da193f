"""The worker's Prometheus metrics, served by livekit-agents at ATLAS_AGENT_METRICS_PORT/metrics.

All sessions of a worker share one process (thread job executor), so one registry sees them
all. prometheus_client's default process collector adds `process_cpu_seconds_total` and
`process_resident_memory_bytes`; livekit-agents adds its own `lk_agents_*` series. Built on
first use, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

# Render and conversion times are a few ms on a CPU; a frame interval is 40 ms at 25 fps.
_FRAME_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# A speech start waits for its first frame's audio slice and lookahead (~50 ms at 25 fps), then
# for the render thread.
_START_BUCKETS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    sessions_live: Gauge
    sessions_ended: Counter
    frames: Counter
    frames_late: Counter
    render_seconds: Histogram
    convert_seconds: Histogram
    audio_underruns: Counter
    speech_start_seconds: Histogram
    batch_size: Histogram
    batch_seconds: Histogram
    models_loaded: Gauge
    load: Gauge

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


@lru_cache(maxsize=1)
def worker_metrics() -> WorkerMetrics:
    return WorkerMetrics(
        sessions_live=Gauge("atlas_agent_sessions_live", "Avatar sessions running now"),
        sessions_ended=Counter(
            "atlas_agent_sessions_ended", "Avatar sessions ended, by reason", ["reason"]
        ),
        frames=Counter("atlas_agent_frames", "Video frames rendered", ["kind"]),
        frames_late=Counter(
            "atlas_agent_frames_late", "Frames that took longer than a frame interval to render"
        ),
        render_seconds=Histogram(
            "atlas_agent_render_seconds", "Time to render one frame", buckets=_FRAME_BUCKETS
        ),
        convert_seconds=Histogram(
            "atlas_agent_convert_seconds",
            "Time to convert one frame to I420 for the video encoder",
            buckets=_FRAME_BUCKETS,
        ),
        audio_underruns=Counter(
            "atlas_agent_audio_underruns", "Times the published audio ran dry inside speech"
        ),
        speech_start_seconds=Histogram(
            "atlas_agent_speech_start_seconds",
            "From a speech segment's first audio reaching the renderer (from rest) to its first "
            "speech frame leaving it",
            buckets=_START_BUCKETS,
        ),
        batch_size=Histogram(
            "atlas_agent_batch_size",
            "Frames per inference batch (all sessions of the process)",
            buckets=_BATCH_BUCKETS,
        ),
        batch_seconds=Histogram(
            "atlas_agent_batch_seconds", "Time to run one inference batch", buckets=_FRAME_BUCKETS
        ),
        models_loaded=Gauge(
            "atlas_agent_models_loaded",
            "Models this process has loaded (landmarker, render backend, Silero VAD)",
        ),
        load=Gauge(
            "atlas_agent_load",
            "The load last reported to LiveKit (its target load means full: no new jobs)",
        ),
    )
