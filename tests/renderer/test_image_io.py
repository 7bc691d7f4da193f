"""decode_peak_bytes: the header-only estimate the API budgets photo checks by must cover what a
decode really holds. Each decode runs in a fresh interpreter, so its peak RSS is its own."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from renderer.image_io import MAX_FULL_DECODE_PIXELS, decode_peak_bytes
from tests.paths import ROOT

MB = 1024 * 1024

# The peak RSS (VmHWM) is reset to the current RSS after the imports ("5" to clear_refs), so
# what remains above the RSS before is the decode's.
MEASURE = """
import sys
import cv2  # the API has it loaded (the renderer uses it); its import is not the decode's
from renderer.image_io import decode_image
def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
data = open(sys.argv[1], "rb").read()
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = kib("VmRSS")
decode_image(data)
print((kib("VmHWM") - before) * 1024)
"""


def encode(size: int, mode: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), (40, 90, 160, 200)[: len(mode)]).save(buf, format=fmt)
    return buf.getvalue()


def measured_peak_bytes(data: bytes, tmp_path: Path) -> int:
    path = tmp_path / "photo"
    path.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize(
    ("size", "mode", "fmt"),
    [(4096, "RGBA", "WEBP"), (4096, "RGBA", "PNG"), (7000, "RGB", "JPEG"), (1024, "RGB", "JPEG")],
)
def test_the_estimate_covers_the_real_peak(size: int, mode: str, fmt: str, tmp_path: Path) -> None:
    data = encode(size, mode, fmt)
    estimate = decode_peak_bytes(data)
    real = measured_peak_bytes(data, tmp_path)
    print(f"{fmt} {size}px {mode}: estimate {estimate / MB:.0f} MB, real {real / MB:.0f} MB")
    assert real <= estimate


def test_a_jpeg_is_estimated_at_its_scaled_decode() -> None:
    # a 6000 px JPEG decodes at half size, so it costs what a 3000 px one does
    assert decode_peak_bytes(encode(6000, "RGB", "JPEG")) == decode_peak_bytes(
        encode(3000, "RGB", "JPEG")
    )


def test_refused_photos_are_estimated_at_nothing() -> None:
    side = int(MAX_FULL_DECODE_PIXELS**0.5) + 1
    assert decode_peak_bytes(encode(side, "RGB", "PNG")) == 0
    assert decode_peak_bytes(b"not an image") == 0
    assert decode_peak_bytes(encode(64, "RGB", "PNG")[:20]) == 0  # header cut short
