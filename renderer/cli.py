"""`atlas render`: one-shot offline render with a progress bar."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from pydantic import ValidationError

from renderer.backends import Backend, create_backend
from renderer.contact_sheet import write_contact_sheet
from renderer.errors import RendererError
from renderer.face import FaceAsset
from renderer.offline import RenderResult, probe_audio, render_file
from renderer.options import RendererOptions
from renderer.settings import RendererSettings, describe_invalid

EXIT_BAD_INPUT = 2
CONTACT_SHEET_FRAMES = 16


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas render", description="Render a face photo speaking an audio file to MP4."
    )
    parser.add_argument("--audio", required=True, type=Path, help="wav, mp3, ogg/opus, webm...")
    parser.add_argument("--image", required=True, type=Path, help="PNG, JPEG or WebP face photo")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output .mp4 path")
    # Defaults come from ATLAS_RENDERER_* (renderer.settings); a flag overrides its variable.
    parser.add_argument("--backend", choices=("warp", "wav2lip"), help="ATLAS_RENDERER_BACKEND")
    parser.add_argument(
        "--model", help="Wav2Lip-contract .onnx; implies --backend wav2lip (ATLAS_RENDERER_MODEL)"
    )
    parser.add_argument("--fps", type=int, help="ATLAS_RENDERER_FPS (25)")
    parser.add_argument("--size", type=int, help="output side in pixels, even (512)")
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
    except ValidationError as exc:
        _error(describe_invalid(exc))
        return EXIT_BAD_INPUT
    except (RendererError, ValueError, OSError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("atlas render: interrupted", file=sys.stderr)
        return 130


def _error(message: str) -> None:
    """One line, whatever the message (ONNX Runtime's own errors span several)."""
    print(f"atlas render: error: {' '.join(message.split())}", file=sys.stderr)


def options_from(args: argparse.Namespace) -> RendererOptions:
    """ATLAS_RENDERER_* settings with the command line's flags on top."""
    flags = {
        # a model is only ever for the neural backend: --model alone selects it
        "backend": args.backend or ("wav2lip" if args.model else None),
        "model": args.model,
        "fps": args.fps,
        "size": args.size,
        "idle_motion": False if args.no_idle_motion else None,
    }
    settings = RendererSettings(**{name: v for name, v in flags.items() if v is not None})
    options = settings.to_options()
    return replace(options, keep_framing=True) if args.keep_framing else options


def _render(args: argparse.Namespace) -> int:
    for label, path in (("audio", args.audio), ("image", args.image)):
        if not path.is_file():
            raise ValueError(f"{label} file not found: {path}")
    options = options_from(args)
    probe_audio(args.audio)  # fail fast, before the slower face detection
    backend = create_backend(options)  # a missing or wrong-shaped model fails here
    try:
        with _native_stderr_silenced():
            face = FaceAsset.prepare(args.image.read_bytes(), options=options)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        result = _render_with_progress(args, face, options, backend)
    finally:
        backend.close()
    if args.contact_sheet:
        write_contact_sheet(result.sample_frames, args.contact_sheet)
    speed = result.duration_s / max(result.elapsed_s, 1e-9)
    print(
        f"wrote {args.output}: {result.duration_s:.2f} s, {result.frames} frames "
        f"in {result.elapsed_s:.1f} s ({speed:.1f}x realtime)"
    )
    return 0


def _render_with_progress(
    args: argparse.Namespace, face: FaceAsset, options: RendererOptions, backend: Backend
) -> RenderResult:
    from tqdm import tqdm

    with tqdm(
        total=100, unit="%", desc="rendering", disable=not sys.stderr.isatty(), leave=False
    ) as bar:

        def progress(fraction: float) -> None:
            bar.update(round(fraction * 100) - bar.n)

        return render_file(
            args.audio,
            face,
            args.output,
            options=options,
            backend=backend,
            on_progress=progress,
            sample_frames=CONTACT_SHEET_FRAMES if args.contact_sheet else 0,
        )


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
