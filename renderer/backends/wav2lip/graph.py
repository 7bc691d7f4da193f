"""The Wav2Lip generator (96 x 96) as an ONNX graph, built from a table of its layers.

The layer table follows the published architecture (Prajwal et al., 2020, "A Lip Sync Expert Is
All You Need"): a face encoder of 7 blocks (96 -> 1 px), an audio encoder over the (1, 80, 16)
mel window (-> 512 x 1 x 1), and a decoder of 7 blocks whose outputs are concatenated with the
matching face features (a U-Net), then a 3-channel sigmoid head. Every "conv" is Conv2d +
BatchNorm2d (+ the input, when residual) + ReLU; decoder up-sampling uses ConvTranspose2d.

The same graph takes random weights (tests and benchmarks) or a trained checkpoint's state dict
(`atlas model convert`), whose keys this table also names. No weights ship with this code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from renderer.errors import ModelError

BN_EPS = 1e-5
OPSET = 17
MEL_INPUT = "mel"
FACE_INPUT = "face"
OUTPUT = "frames"


@dataclass(frozen=True, slots=True)
class Conv:
    key: str  # state-dict prefix of the layer
    cin: int
    cout: int
    kernel: int
    stride: tuple[int, int] = (1, 1)
    padding: int = 1
    residual: bool = False
    transpose: bool = False
    output_padding: int = 0


def _res(key: str, channels: int) -> Conv:
    return Conv(key, channels, channels, 3, residual=True)


def _block(prefix: str, first: Conv, residuals: int) -> tuple[Conv, ...]:
    rest = tuple(_res(f"{prefix}.{i}", first.cout) for i in range(1, residuals + 1))
    return (first, *rest)


def _face_encoder() -> tuple[tuple[Conv, ...], ...]:
    p = "face_encoder_blocks"
    down = [(16, 32, 2), (32, 64, 3), (64, 128, 2), (128, 256, 2), (256, 512, 1)]
    blocks: list[tuple[Conv, ...]] = [(Conv(f"{p}.0.0", 6, 16, 7, padding=3),)]
    for b, (cin, cout, residuals) in enumerate(down, start=1):
        blocks.append(_block(f"{p}.{b}", Conv(f"{p}.{b}.0", cin, cout, 3, (2, 2)), residuals))
    blocks.append(
        (Conv(f"{p}.6.0", 512, 512, 3, padding=0), Conv(f"{p}.6.1", 512, 512, 1, padding=0))
    )
    return tuple(blocks)


def _audio_encoder() -> tuple[Conv, ...]:
    p = "audio_encoder"
    layers: list[Conv] = []
    stages = [(1, 32, (1, 1), 2), (32, 64, (3, 1), 2), (64, 128, (3, 3), 2), (128, 256, (3, 2), 1)]
    for cin, cout, stride, residuals in stages:
        layers.append(Conv(f"{p}.{len(layers)}", cin, cout, 3, stride))
        layers.extend(_res(f"{p}.{len(layers)}", cout) for _ in range(residuals))
    layers.append(Conv(f"{p}.{len(layers)}", 256, 512, 3, padding=0))
    layers.append(Conv(f"{p}.{len(layers)}", 512, 512, 1, padding=0))
    return tuple(layers)


def _face_decoder() -> tuple[tuple[Conv, ...], ...]:
    p = "face_decoder_blocks"
    blocks: list[tuple[Conv, ...]] = [(Conv(f"{p}.0.0", 512, 512, 1, padding=0),)]
    first = Conv(f"{p}.1.0", 1024, 512, 3, padding=0, transpose=True)
    blocks.append(_block(f"{p}.1", first, 1))
    ups = [(1024, 512), (768, 384), (512, 256), (320, 128), (160, 64)]
    for b, (cin, cout) in enumerate(ups, start=2):
        up = Conv(f"{p}.{b}.0", cin, cout, 3, (2, 2), transpose=True, output_padding=1)
        blocks.append(_block(f"{p}.{b}", up, 2))
    return tuple(blocks)


FACE_ENCODER = _face_encoder()
AUDIO_ENCODER = _audio_encoder()
FACE_DECODER = _face_decoder()
OUTPUT_CONV = Conv("output_block.0", 80, 32, 3)
HEAD_KEY = "output_block.1"  # plain Conv2d(32, 3, 1) before the sigmoid


def all_convs() -> Iterator[Conv]:
    for block in FACE_ENCODER:
        yield from block
    yield from AUDIO_ENCODER
    for block in FACE_DECODER:
        yield from block
    yield OUTPUT_CONV


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of a Wav2Lip state dict this graph uses, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for conv in all_convs():
        w = (conv.cin, conv.cout) if conv.transpose else (conv.cout, conv.cin)
        shapes[f"{conv.key}.conv_block.0.weight"] = (*w, conv.kernel, conv.kernel)
        shapes[f"{conv.key}.conv_block.0.bias"] = (conv.cout,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{conv.key}.conv_block.1.{name}"] = (conv.cout,)
    shapes[f"{HEAD_KEY}.weight"] = (3, 32, 1, 1)
    shapes[f"{HEAD_KEY}.bias"] = (3,)
    return shapes


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised random weights with non-trivial BatchNorm statistics (tests, benchmarks)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in expected_shapes().items():
        if name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("conv_block.1.weight"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("weight"):
            scale = 1.1 / np.sqrt(int(np.prod(shape[1:])))
            value = rng.standard_normal(shape) * scale
        else:
            value = 0.05 * rng.standard_normal(shape)
        weights[name] = np.asarray(value, dtype=np.float32)
    return weights


def checkpoint_weights(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A trained state dict (DataParallel `module.` prefixes stripped) checked against the table."""
    tensors = {
        key.removeprefix("module."): np.asarray(_to_numpy(value), dtype=np.float32)
        for key, value in state_dict.items()
        if not key.endswith("num_batches_tracked")
    }
    wanted = expected_shapes()
    missing = sorted(set(wanted) - set(tensors))
    wrong = sorted(k for k in wanted if k in tensors and tuple(tensors[k].shape) != wanted[k])
    if missing or wrong:
        details = [f"missing {k}" for k in missing[:5]]
        details += [f"{k} is {tuple(tensors[k].shape)}, expected {wanted[k]}" for k in wrong[:5]]
        raise ModelError("the checkpoint is not the Wav2Lip 96x96 generator: " + "; ".join(details))
    return {k: tensors[k] for k in wanted}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return np.asarray(value.detach().cpu().float().numpy())
    return np.asarray(value)


class _Builder:
    def __init__(self, weights: Mapping[str, np.ndarray], dtype: Any) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self._weights = weights
        self._dtype = dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, key: str) -> str:
        self.initializers.append(
            self._numpy_helper.from_array(self._weights[key].astype(self._dtype), key)
        )
        return key

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self._name(op.lower())
        self.nodes.append(self._helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, conv: Conv) -> str:
        k = f"{conv.key}.conv_block"
        attrs: dict[str, Any] = {
            "kernel_shape": [conv.kernel, conv.kernel],
            "strides": list(conv.stride),
            "pads": [conv.padding] * 4,
        }
        if conv.transpose:
            attrs["output_padding"] = [conv.output_padding] * 2
        op = "ConvTranspose" if conv.transpose else "Conv"
        y = self.node(op, [x, self.const(f"{k}.0.weight"), self.const(f"{k}.0.bias")], **attrs)
        norm = [self.const(f"{k}.1.{n}") for n in ("weight", "bias", "running_mean", "running_var")]
        y = self.node("BatchNormalization", [y, *norm], epsilon=BN_EPS)
        if conv.residual:
            y = self.node("Add", [y, x])
        return self.node("Relu", [y])


def build_wav2lip_onnx(weights: Mapping[str, np.ndarray], *, fp16: bool = False) -> bytes:
    """Serialised ONNX: mel (B,1,80,16) + face (B,6,96,96) -> frames (B,3,96,96), dynamic B.

    With fp16 the weights and arithmetic are half precision; inputs and output stay float32.
    """
    from onnx import TensorProto, checker, helper

    b = _Builder(weights, np.float16 if fp16 else np.float32)
    mel, face = MEL_INPUT, FACE_INPUT
    if fp16:
        mel = b.node("Cast", [mel], to=TensorProto.FLOAT16)
        face = b.node("Cast", [face], to=TensorProto.FLOAT16)
    x = mel
    for conv in AUDIO_ENCODER:
        x = b.conv(x, conv)
    features = []
    y = face
    for block in FACE_ENCODER:
        for conv in block:
            y = b.conv(y, conv)
        features.append(y)
    for block in FACE_DECODER:
        for conv in block:
            x = b.conv(x, conv)
        x = b.node("Concat", [x, features.pop()], axis=1)
    x = b.conv(x, OUTPUT_CONV)
    x = b.node("Conv", [x, b.const(f"{HEAD_KEY}.weight"), b.const(f"{HEAD_KEY}.bias")])
    x = b.node("Sigmoid", [x])
    if fp16:
        x = b.node("Cast", [x], to=TensorProto.FLOAT)
    b.nodes.append(helper.make_node("Identity", [x], [OUTPUT]))

    def io(name: str, shape: list[str | int]) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(
        b.nodes,
        "wav2lip",
        [io(MEL_INPUT, ["batch", 1, 80, 16]), io(FACE_INPUT, ["batch", 6, 96, 96])],
        [io(OUTPUT, ["batch", 3, 96, 96])],
        initializer=b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    model.producer_name = "atlas-avatars"
    checker.check_model(model)
    return bytes(model.SerializeToString())
