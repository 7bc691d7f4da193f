"""`atlas render`: one-shot offline render with a progress bar."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from renderer.contact_sheet import write_contact_sheet
from renderer.errors import RendererError
from renderer.face import FaceAsset
from renderer.offline import probe_audio, render_file
from renderer.options import RendererOptions

EXIT_BAD_INPUT = 2
CONTACT_SHEET_FRAMES = 16


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas render", description="Render a face photo speaking an audio file to MP4."
    )
    parser.add_argument("--audio", required=True, type=Path, help="wav, mp3, ogg/opus, webm...")
    parser.add_argument("--image", required=True, type=Path, help="PNG, JPEG or WebP face photo")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output .mp4 path")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", type=int, default=512, help="output side in pixels (even)")
    parser.add_argument(
        "--keep-framing", action="store_true", help="keep the whole photo instead of a face crop"
    )
    parser.add_argument("--no-idle-motion", action="store_true", help="no blinks or sway")
    parser.add_argument("--contact-sheet", type=Path, help="also write a PNG grid of frames")
    return parser


def run(command: str, argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error (already printed)
        return int(exc.code or 0) and EXIT_BAD_INPUT
    try:
        return _render(args)
    except (RendererError, ValueError, OSError) as exc:
        print(f"atlas render: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("atlas render: interrupted", file=sys.stderr)
        return 130


def _render(args: argparse.Namespace) -> int:
    for label, path in (("audio", args.audio), ("image", args.image)):
        if not path.is_file():
            raise ValueError(f"{label} file not found: {path}")
    options = RendererOptions(
        fps=args.fps,
        size=args.size,
        keep_framing=args.keep_framing,
        idle_motion=not args.no_idle_motion,
    )
    probe_audio(args.audio)  # fail fast, before the slower face detection
    with _native_stderr_silenced():
        face = FaceAsset.prepare(args.image.read_bytes(), options=options)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    with tqdm(
        total=100, unit="%", desc="rendering", disable=not sys.stderr.isatty(), leave=False
    ) as bar:

        def progress(fraction: float) -> None:
            bar.update(round(fraction * 100) - bar.n)

        result = render_file(
            args.audio,
            face,
            args.output,
            options=options,
            on_progress=progress,
            sample_frames=CONTACT_SHEET_FRAMES if args.contact_sheet else 0,
        )
    if args.contact_sheet:
        write_contact_sheet(result.sample_frames, args.contact_sheet)
    speed = result.duration_s / max(result.elapsed_s, 1e-9)
    print(
        f"wrote {args.output}: {result.duration_s:.2f} s, {result.frames} frames "
        f"in {result.elapsed_s:.1f} s ({speed:.1f}x realtime)"
    )
    return 0


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ start-up chatter bypasses Python logging; keep the terminal to one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
