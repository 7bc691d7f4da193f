"""`atlas model convert`: a Wav2Lip PyTorch checkpoint -> a Wav2Lip-contract ONNX file.

No torch needed: renderer.backends.wav2lip.checkpoint reads the .pth (both of torch's formats,
pickles through an allow-list), and renderer.backends.wav2lip.graph builds the graph, with a
dynamic batch dimension.
DataParallel `module.` prefixes are stripped. `--fp16` stores half-precision weights (inputs and
output stay float32). Use only weights you are licensed to use: Wav2Lip's official ones are
non-commercial.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from renderer.errors import ModelError

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atlas model", description="Manage lip-sync models.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    convert = verbs.add_parser("convert", help="Wav2Lip .pth checkpoint -> ONNX")
    convert.add_argument("--checkpoint", required=True, type=Path, help="wav2lip .pth file")
    convert.add_argument("-o", "--output", required=True, type=Path, help="output .onnx path")
    convert.add_argument("--fp16", action="store_true", help="half-precision weights")
    return parser


def run(command: str, argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_BAD_INPUT
    try:
        convert(args.checkpoint, args.output, fp16=args.fp16)
    except (ModelError, OSError) as exc:
        print(f"atlas model: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {args.output}")
    return 0


def load_state_dict(checkpoint: Path) -> dict[str, Any]:
    """The generator's state dict from a .pth (a bare state dict or {"state_dict": ...})."""
    from renderer.backends.wav2lip.checkpoint import load_checkpoint

    data = load_checkpoint(checkpoint)
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise ModelError("the checkpoint holds no state dict")
    return state


def convert(checkpoint: Path, output: Path, *, fp16: bool = False) -> None:
    from renderer.backends.wav2lip.engine import session_contract
    from renderer.backends.wav2lip.graph import build_wav2lip_onnx, checkpoint_weights

    weights = checkpoint_weights(load_state_dict(checkpoint))
    model = build_wav2lip_onnx(weights, fp16=fp16)
    import onnxruntime as ort

    # the file must meet the contract the backend checks (it does by construction; prove it)
    session_contract(ort.InferenceSession(model, providers=["CPUExecutionProvider"]))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(model)
