"""A Chromium page driven through tests/web/js/driver.mjs (playwright-core, /usr/bin/chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.livekit_server import in_ci

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = "/usr/bin/chromium"

# Reads the avatar video through a canvas on every presented frame: the media-clock frame rate
# and, per frame, the mean absolute change of the mouth region (lower middle of the frame).
# Also, per frame, the peak of the avatar's voice as the page plays it (VOICE_PEAK_JS), so a
# window's "silence" can be checked against what the viewer hears.
MEASURE_JS = """
async ({ seconds, selector }) => {
  const v = document.querySelector(selector);
  const voice = [];
  const W = 64, H = 48;
  const c = document.createElement("canvas");
  c.width = W; c.height = H;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  const diffs = [], media = [];
  let prev = null;
  const t0 = performance.now();
  const q0 = v.getVideoPlaybackQuality(), c0 = v.currentTime;
  await new Promise((resolve) => {
    const step = (now, meta) => {
      media.push(meta.mediaTime);
      const vw = v.videoWidth, vh = v.videoHeight;
      ctx.drawImage(v, vw * 0.25, vh * 0.45, vw * 0.5, vh * 0.45, 0, 0, W, H);
      const d = ctx.getImageData(0, 0, W, H).data;
      const g = new Float32Array(W * H);
      for (let i = 0; i < W * H; i++) g[i] = (d[4 * i] + d[4 * i + 1] + d[4 * i + 2]) / 3;
      if (prev) {
        let s = 0;
        for (let i = 0; i < W * H; i++) s += Math.abs(g[i] - prev[i]);
        diffs.push(s / (W * H));
      }
      prev = g;
      if (window.__atlasVoicePeak) voice.push(window.__atlasVoicePeak());
      if (now - t0 < seconds * 1000) v.requestVideoFrameCallback(step); else resolve();
    };
    v.requestVideoFrameCallback(step);
  });
  const span = media[media.length - 1] - media[0];
  const q1 = v.getVideoPlaybackQuality(), c1 = v.currentTime;
  return { frames: media.length, media_fps: (media.length - 1) / span, diffs,
           decoded_fps: (q1.totalVideoFrames - q0.totalVideoFrames) / (c1 - c0),
           dropped: q1.droppedVideoFrames - q0.droppedVideoFrames,
           width: v.videoWidth, height: v.videoHeight, voice };
}
"""

# Installs `window.__atlasVoicePeak()`: the largest sample magnitude (0..1) of the avatar's
# voice over the last ~40 ms, read from the page's own `audio[data-atlas-voice]` elements through
# an AnalyserNode (0 when no voice element is attached yet).
VOICE_PEAK_JS = """
() => {
  if (window.__atlasVoicePeak) return;
  const ctx = new AudioContext();
  const meters = new WeakMap();
  const meter = (el) => {
    if (!meters.has(el) && el.srcObject) {
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 2048;
      ctx.createMediaStreamSource(el.srcObject).connect(analyser);
      meters.set(el, { analyser, buf: new Float32Array(analyser.fftSize) });
    }
    return meters.get(el);
  };
  window.__atlasVoicePeak = () => {
    let peak = 0;
    for (const el of document.querySelectorAll("audio[data-atlas-voice]")) {
      const m = meter(el);
      if (!m) continue;
      m.analyser.getFloatTimeDomainData(m.buf);
      for (const x of m.buf) peak = Math.max(peak, Math.abs(x));
    }
    return peak;
  };
}
"""

# How long until the avatar's voice has stayed under `level` for `quiet_ms` in a row; -1 if it
# has not within `timeout_ms`.
VOICE_QUIET_JS = """
async ({ level, quiet_ms, timeout_ms }) => {
  const t0 = performance.now();
  let since = t0;
  while (performance.now() - t0 < timeout_ms) {
    if (window.__atlasVoicePeak() >= level) since = performance.now();
    else if (performance.now() - since >= quiet_ms) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 20));
  }
  return -1;
}
"""


def need_browser() -> None:
    """Fail in CI (browser tests must run there), skip elsewhere, when a piece is missing."""
    missing = [
        what
        for what, ok in (
            ("/usr/bin/chromium (scripts/web.sh chromium)", os.access(CHROMIUM, os.X_OK)),
            ("node", shutil.which("node") is not None),
            (
                "web/node_modules (scripts/web.sh build)",
                (ROOT / "web" / "node_modules" / "playwright-core").is_dir(),
            ),
            ("web/dist/demo (scripts/web.sh build)", (ROOT / "web/dist/demo/index.html").is_file()),
        )
        if not ok
    ]
    if missing:
        reason = "browser tests need " + ", ".join(missing)
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


class Browser:
    def __init__(self, *, fake_mic_wav: Path | None = None, deny_mic: bool = False) -> None:
        env = {**os.environ}
        if fake_mic_wav is not None:
            env["ATLAS_FAKE_MIC_WAV"] = str(fake_mic_wav)
        if deny_mic:
            env["ATLAS_DENY_MIC"] = "1"
        self._proc = subprocess.Popen(
            ["node", str(HERE / "js" / "driver.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._next = 0
        self._lock = threading.Lock()

    def call(self, op: str, **args: Any) -> Any:
        with self._lock:
            self._next += 1
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(json.dumps({"id": self._next, "op": op, **args}) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            raise AssertionError(f"the browser driver exited: {err[-3000:]}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"{op} failed: {answer['error']}\nconsole: {self.logs()}")
        return answer["result"]

    def logs(self) -> list[str]:
        try:
            with self._lock:
                assert self._proc.stdin is not None and self._proc.stdout is not None
                self._proc.stdin.write(json.dumps({"id": 0, "op": "logs"}) + "\n")
                self._proc.stdin.flush()
                result: list[str] = json.loads(self._proc.stdout.readline())["result"]
                return result[-60:]
        except Exception:
            return []

    def open(self, url: str) -> None:
        self.call("open", url=url)

    def eval(self, js: str, arg: Any = None) -> Any:
        return self.call("eval", js=js, arg=arg)

    def wait_for(self, js: str, arg: Any = None, *, timeout_s: float = 90) -> Any:
        return self.call("waitFor", js=js, arg=arg, timeoutMs=int(timeout_s * 1000))

    def click(self, selector: str) -> None:
        self.call("click", selector=selector)

    def fill(self, selector: str, value: str) -> None:
        self.call("fill", selector=selector, value=value)

    def viewport(self, width: int, height: int) -> None:
        self.call("viewport", width=width, height=height)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.call("screenshot", path=str(path))

    def measure(self, seconds: float, selector: str = "video[data-atlas-avatar]") -> Any:
        return self.eval(MEASURE_JS, {"seconds": seconds, "selector": selector})

    def meter_voice(self) -> None:
        """From now on `measure` also records the avatar's voice peak per frame."""
        self.eval(VOICE_PEAK_JS)

    def wait_voice_quiet(self, *, level: float, quiet_s: float, timeout_s: float) -> float:
        """Seconds until the avatar's voice, as the page plays it, had been under `level` for
        `quiet_s` (needs `meter_voice`)."""
        arg = {"level": level, "quiet_ms": quiet_s * 1000, "timeout_ms": timeout_s * 1000}
        waited_ms = float(self.eval(VOICE_QUIET_JS, arg))
        assert waited_ms >= 0, f"the avatar's voice was not quiet for {quiet_s} s in {timeout_s} s"
        return waited_ms / 1000

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.call("close")
            except Exception:
                pass
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
