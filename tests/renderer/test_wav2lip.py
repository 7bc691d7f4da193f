"""The wav2lip backend on a random-weight model of the exact Wav2Lip architecture (real ORT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr

from renderer import FaceAsset, RendererOptions, StreamRenderer
from renderer.audio import MouthShape
from renderer.backends import AudioBackend, create_backend
from renderer.backends.base import FrameAudio, PreparedFace
from renderer.backends.wav2lip.backend import (
    Wav2LipBackend,
    Wav2LipFace,
    mel_for,
    paste_back,
)
from renderer.backends.wav2lip.engine import (
    NeuralSettings,
    TensorInfo,
    Wav2LipEngine,
    provider_plan,
    shared_engines,
    validate_contract,
)
from renderer.errors import ModelError
from tests.renderer.wav2lip_support import (
    contract_model,
    reference_chunks,
    reference_melspectrogram,
    speech_16k,
    wav2lip_engine_fixture,  # noqa: F401 (fixture)
    wav2lip_model_fixture,  # noqa: F401 (fixture)
)

OPTIONS_16K = RendererOptions(backend="wav2lip", sample_rate=16000, idle_motion=False)


def _stream(
    face: FaceAsset, backend: Wav2LipBackend, pcm: np.ndarray, rate: int, chunk: int
) -> list[np.ndarray]:
    """Push float PCM in chunks, flush, and return every speech frame's image."""
    renderer = StreamRenderer(face=face, options=backend_options(backend), backend=backend)
    images = []
    for start in range(0, pcm.size, chunk):
        renderer.push_audio(pcm[start : start + chunk], sample_rate=rate)
        while (frame := renderer.pull()) is not None:
            images.append(frame.image)
    renderer.flush()
    while (frame := renderer.pull()) is not None:
        images.append(frame.image)
    renderer.close()
    return images


def backend_options(backend: Wav2LipBackend) -> RendererOptions:
    return backend._options


class RecordingBackend(Wav2LipBackend):
    """The real backend, which also keeps the mel window it used for each speech frame."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.mels: list[np.ndarray] = []

    def render_audio(
        self, prepared: PreparedFace, mouth: MouthShape, audio: FrameAudio | None
    ) -> np.ndarray:
        if audio is not None:
            self.mels.append(mel_for(audio))
        return super().render_audio(prepared, mouth, audio)


# -- the I/O contract -----------------------------------------------------------------------


def _info(name: str, shape: tuple[int | str, ...], kind: str = "tensor(float)") -> TensorInfo:
    return TensorInfo(name=name, shape=shape, type=kind)


def test_the_random_wav2lip_model_meets_the_contract(wav2lip_engine: Wav2LipEngine) -> None:
    contract = wav2lip_engine.contract
    assert (contract.mel_input, contract.face_input, contract.output) == ("mel", "face", "frames")
    assert contract.face_size == 96 and contract.batch is None


def test_the_256_variant_and_fixed_batches_are_accepted(tmp_path: Path) -> None:
    path = contract_model(
        tmp_path / "m256.onnx", mel=(4, 1, 80, 16), face=(4, 6, 256, 256), names=("b", "a", "y")
    )
    engine = Wav2LipEngine(str(path))
    try:
        assert engine.face_size == 256 and engine.contract.batch == 4
        assert (engine.contract.mel_input, engine.contract.face_input) == ("b", "a")
        rng = np.random.default_rng(0)
        faces = rng.random((6, 6, 256, 256), dtype=np.float32)
        mels = rng.uniform(-4, 4, (6, 1, 80, 16)).astype(np.float32)
        out = engine.run_batch(mels, faces)  # 6 frames through a batch-4 model: padded
        gain = 1 / (1 + np.exp(-mels.mean(axis=(1, 2, 3))))
        assert out.shape == (6, 3, 256, 256)
        assert np.allclose(out, faces[:, 3:] * gain[:, None, None, None], atol=1e-5)
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("inputs", "outputs", "needle"),
    [
        (
            [_info("mel", ("B", 1, 80, 16)), _info("face", ("B", 6, 128, 128))],
            [_info("out", ("B", 3, 128, 128))],
            "face (B,6,128,128)",
        ),
        (
            [_info("mel", ("B", 1, 80, 20)), _info("face", ("B", 6, 96, 96))],
            [_info("out", ("B", 3, 96, 96))],
            "mel (B,1,80,20)",
        ),
        (
            [_info("mel", ("B", 1, 80, 16)), _info("face", ("B", 6, 96, 96))],
            [_info("out", ("B", 3, 48, 48))],
            "out (B,3,48,48)",
        ),
        (
            [_info("mel", (1, 1, 80, 16)), _info("face", (2, 6, 96, 96))],
            [_info("out", (1, 3, 96, 96))],
            "inconsistent batch",
        ),
        (
            [_info("mel", ("B", 1, 80, 16), "tensor(int64)"), _info("face", ("B", 6, 96, 96))],
            [_info("out", ("B", 3, 96, 96))],
            "tensor(int64)",
        ),
    ],
)
def test_contract_mismatches_name_the_shapes(
    inputs: list[TensorInfo], outputs: list[TensorInfo], needle: str
) -> None:
    with pytest.raises(ModelError) as caught:
        validate_contract(inputs, outputs)
    message = str(caught.value)
    assert needle in message
    assert "expected inputs mel (B,1,80,16) and face (B,6,96,96)" in message


def test_a_wrong_model_file_fails_when_the_backend_opens(tmp_path: Path) -> None:
    path = contract_model(tmp_path / "bad.onnx", extra_input=True)
    options = RendererOptions(backend="wav2lip", model_path=str(path))
    with pytest.raises(ModelError, match="3 inputs"):
        create_backend(options)
    with pytest.raises(ModelError, match="ATLAS_RENDERER_MODEL"):
        create_backend(RendererOptions(backend="wav2lip"))
    with pytest.raises(ModelError, match="not found"):
        create_backend(RendererOptions(backend="wav2lip", model_path=str(tmp_path / "no.onnx")))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="could not load"):
        create_backend(RendererOptions(backend="wav2lip", model_path=str(tmp_path / "junk.onnx")))
    assert shared_engines() == 0


# -- providers ------------------------------------------------------------------------------

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def test_provider_plan_prefers_tensorrt_then_cuda_then_cpu() -> None:
    settings = NeuralSettings(trt_cache_dir="/cache/trt")
    plan = provider_plan(None, [CPU, CUDA, TRT], contract_inputs=("m", "f"), settings=settings)
    assert [name for name, _ in plan] == [TRT, CUDA, CPU]
    trt = plan[0][1]
    assert trt["trt_fp16_enable"] == "True"
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_engine_cache_path"] == "/cache/trt"
    assert trt["trt_profile_min_shapes"] == "m:1x1x80x16,f:1x6x96x96"
    assert trt["trt_profile_max_shapes"] == "m:32x1x80x16,f:32x6x96x96"
    assert plan[1][1]["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    # absent providers are skipped; CPU always closes the list
    assert [n for n, _ in provider_plan(None, [CPU, CUDA])] == [CUDA, CPU]
    assert [n for n, _ in provider_plan(None, [CPU])] == [CPU]
    assert [n for n, _ in provider_plan((TRT,), [CPU, CUDA])] == [CPU]


def test_asking_for_gpu_providers_without_them_falls_back_to_cpu(
    face: FaceAsset, wav2lip_model: Path
) -> None:
    options = RendererOptions(
        backend="wav2lip", model_path=str(wav2lip_model), providers=(TRT, CUDA), idle_motion=False
    )
    renderer = StreamRenderer(face=face, options=options)
    try:
        assert renderer.provider == CPU
        tone = 0.3 * np.sin(np.arange(12000) * 2 * np.pi * 200 / 24000)
        renderer.push_audio(tone.astype(np.float32), sample_rate=24000)
        renderer.flush()
        frame = renderer.pull()
        assert frame is not None and frame.image.shape == (512, 512, 3)
    finally:
        renderer.close()
    assert shared_engines() == 0


def test_io_binding_gives_the_same_numbers(wav2lip_model: Path) -> None:
    rng = np.random.default_rng(3)
    mels = rng.uniform(-4, 4, (3, 1, 80, 16)).astype(np.float32)
    faces = rng.random((3, 6, 96, 96), dtype=np.float32)
    bound = Wav2LipEngine(str(wav2lip_model), settings=NeuralSettings(io_binding=True))
    try:
        assert bound.io_binding
        plain = Wav2LipEngine(str(wav2lip_model), settings=NeuralSettings(io_binding=False))
        try:
            assert np.allclose(
                bound.run_batch(mels, faces), plain.run_batch(mels, faces), atol=1e-6
            )
        finally:
            plain.close()
    finally:
        bound.close()


def test_a_batch_equals_its_frames_one_by_one(wav2lip_engine: Wav2LipEngine) -> None:
    rng = np.random.default_rng(4)
    mels = rng.uniform(-4, 4, (4, 1, 80, 16)).astype(np.float32)
    faces = rng.random((4, 6, 96, 96), dtype=np.float32)
    batch = wav2lip_engine.run_batch(mels, faces)
    single = np.concatenate(
        [wav2lip_engine.run_batch(mels[i : i + 1], faces[i : i + 1]) for i in range(4)]
    )
    assert batch.shape == (4, 3, 96, 96)
    assert np.abs(batch - single).max() < 1e-4
    assert np.abs(batch[0] - batch[1]).max() > 0.01  # different inputs, different outputs


# -- face crop and paste-back ---------------------------------------------------------------


def test_model_input_is_the_masked_crop_then_the_reference(
    face: FaceAsset, wav2lip_engine: Wav2LipEngine
) -> None:
    backend = Wav2LipBackend(engine=wav2lip_engine)
    prepared = backend.prepare(face)
    x0, y0, x1, y1 = prepared.box
    assert x1 - x0 == y1 - y0 or min(x0, y0) == 0 or max(x1, y1) == 512  # square unless clipped
    pts = face.landmarks
    assert x0 <= pts[:, 0].min() and pts[:, 0].max() <= x1 and y0 <= pts[:, 1].min()
    data = prepared.model_input
    assert data.shape == (6, 96, 96) and data.dtype == np.float32
    assert (data[:3, 48:] == 0).all() and np.array_equal(data[:3, :48], data[3:, :48])
    # channels are BGR: the crop's mean blue/red match the photo's
    crop = face.image[y0:y1, x0:x1].reshape(-1, 3).mean(0) / 255
    assert abs(data[3].mean() - crop[2]) < 0.02 and abs(data[5].mean() - crop[0]) < 0.02


def test_paste_back_leaves_pixels_outside_the_mask_untouched(
    face: FaceAsset, wav2lip_engine: Wav2LipEngine
) -> None:
    backend = Wav2LipBackend(engine=wav2lip_engine)
    prepared = backend.prepare(face)
    assert isinstance(prepared, Wav2LipFace)
    x0, y0, x1, y1 = prepared.box
    outside = np.ones(face.image.shape[:2], bool)
    outside[y0:y1, x0:x1] = prepared.alpha == 0
    assert outside.mean() > 0.9 and (~outside).sum() > 500
    rng = np.random.default_rng(5)
    for _ in range(3):
        generated = rng.random((3, 96, 96), dtype=np.float32)
        frame = paste_back(prepared, generated)
        assert np.array_equal(frame[outside], face.image[outside])
        changed = np.abs(frame.astype(int) - face.image.astype(int)).max(axis=2) > 8
        assert changed[~outside].mean() > 0.3
    # the mask is feathered: partial weights, all inside the lower half of the crop
    alpha = prepared.alpha
    assert ((alpha > 0) & (alpha < 1)).sum() > 100 and alpha.max() == pytest.approx(1.0)
    assert not alpha[: alpha.shape[0] // 2].any()


def test_colour_matching_pulls_the_generated_skin_to_the_photo(
    face: FaceAsset, wav2lip_engine: Wav2LipEngine
) -> None:
    prepared = Wav2LipBackend(engine=wav2lip_engine).prepare(face)
    x0, y0, x1, y1 = prepared.box
    reference = prepared.model_input[3:]
    tinted = np.clip(reference + np.array([0.15, -0.1, 0.0], np.float32)[:, None, None], 0, 1)
    frame = paste_back(prepared, tinted)
    region = prepared.stats & (prepared.alpha > 0.9)
    before = face.image[y0:y1, x0:x1][region].astype(float).mean(0)
    after = frame[y0:y1, x0:x1][region].astype(float).mean(0)
    assert np.abs(after - before).max() < 3.0  # a 25-38 level tint, matched away


# -- streaming ------------------------------------------------------------------------------


def test_the_stream_waits_for_a_mel_windows_worth_of_audio(
    face: FaceAsset, wav2lip_engine: Wav2LipEngine
) -> None:
    backend = Wav2LipBackend(options=OPTIONS_16K, engine=wav2lip_engine)
    assert isinstance(backend, AudioBackend)
    renderer = StreamRenderer(face=face, options=OPTIONS_16K, backend=backend)
    assert renderer.lookahead_s == pytest.approx(0.1725)
    renderer.push_audio(np.zeros(640 + 2759, np.float32), sample_rate=16000)
    assert renderer.pull() is None
    renderer.push_audio(np.zeros(1, np.float32), sample_rate=16000)
    assert renderer.pull() is not None
    renderer.close()


def test_streamed_mel_windows_equal_the_reference_chunks(
    face: FaceAsset, speech: tuple[np.ndarray, int], wav2lip_engine: Wav2LipEngine
) -> None:
    """Whatever the chunking, each frame's mel is Wav2Lip's chunk of the whole segment."""
    wav = speech_16k(speech, 1.3)
    reference = reference_chunks(reference_melspectrogram(wav), -(-wav.size // 640))
    backend = RecordingBackend(options=OPTIONS_16K, engine=wav2lip_engine)
    _stream(face, backend, wav, 16000, chunk=533)
    assert len(backend.mels) == len(reference)
    worst = max(np.abs(a - b).max() for a, b in zip(backend.mels, reference, strict=True))
    assert worst < 1e-4


def test_at_24khz_the_mel_matches_the_whole_segment_resampled(
    face: FaceAsset, speech: tuple[np.ndarray, int], wav2lip_engine: Wav2LipEngine
) -> None:
    options = RendererOptions(backend="wav2lip", idle_motion=False)  # 24 kHz
    wav = speech_16k(speech, 1.0)
    pcm24 = soxr.resample(wav, 16000, 24000).astype(np.float32)
    reference16 = soxr.resample(pcm24, 24000, 16000)
    reference = reference_chunks(reference_melspectrogram(reference16), -(-pcm24.size // 960))
    backend = RecordingBackend(options=options, engine=wav2lip_engine)
    _stream(face, backend, pcm24, 24000, chunk=1000)
    assert len(backend.mels) == len(reference)
    errors = np.array([np.abs(a - b).max() for a, b in zip(backend.mels, reference, strict=True)])
    assert errors.max() < 0.02, errors


def test_streaming_equals_offline(
    face: FaceAsset, speech: tuple[np.ndarray, int], wav2lip_engine: Wav2LipEngine
) -> None:
    """Chunked streaming == Wav2Lip run offline (whole-clip mel, one batch, paste-back)."""
    wav = speech_16k(speech, 1.2)
    backend = Wav2LipBackend(options=OPTIONS_16K, engine=wav2lip_engine)
    streamed = _stream(face, backend, wav, 16000, chunk=777)
    prepared = backend.prepare(face)
    chunks = np.stack(reference_chunks(reference_melspectrogram(wav), -(-wav.size // 640)))
    faces = np.repeat(prepared.model_input[None], len(chunks), axis=0)
    outputs = wav2lip_engine.run_batch(chunks[:, None].astype(np.float32), faces)
    offline = [paste_back(prepared, out) for out in outputs]
    assert len(streamed) == len(offline)
    diffs = [
        np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(streamed, offline, strict=True)
    ]
    assert max(diffs) <= 1, diffs
    # ...and the model does listen: the neighbouring frame's mel gives a visibly other mouth
    shifted = [paste_back(prepared, out) for out in outputs[1:]]
    moved = [
        np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(streamed, shifted, strict=False)
    ]
    assert np.median(moved) > 4 * max(max(diffs), 1)


def test_idle_flush_clear_and_face_swap_behave_as_with_warp(
    face: FaceAsset, face_bytes: bytes, wav2lip_engine: Wav2LipEngine
) -> None:
    options = RendererOptions(backend="wav2lip", idle_motion=False)
    backend = Wav2LipBackend(options=options, engine=wav2lip_engine)
    renderer = StreamRenderer(face=face, options=options, backend=backend)
    spf = options.samples_per_frame
    # idle: the photo itself, mouth at rest
    idle = [renderer.next_frame() for _ in range(2)]
    assert all(f.audio is None and np.array_equal(f.image, face.image) for f in idle)
    # flush: every sample comes back, the last slice padded, one segment end
    rng = np.random.default_rng(9)
    pcm = (rng.standard_normal(spf * 5 + 100) * 3000).astype(np.int16)
    renderer.push_audio(pcm, sample_rate=options.sample_rate)
    renderer.flush()
    frames = list(iter(renderer.pull, None))
    assert len(frames) == 6 and [f.segment_end for f in frames] == [False] * 5 + [True]
    out = np.concatenate([f.audio for f in frames if f.audio is not None])
    assert np.array_equal(out[: pcm.size], pcm) and not out[pcm.size :].any()
    assert any(not np.array_equal(f.image, face.image) for f in frames)
    # clear: queued speech is dropped at once and the next frame is at rest
    renderer.push_audio(pcm, sample_rate=options.sample_rate)
    renderer.clear()
    assert renderer.pull() is None and renderer.queued_samples == 0
    after = renderer.next_frame()
    assert after.audio is None and np.array_equal(after.image, face.image)
    # face swap: a crossfade on the same frame clock, no frame dropped
    mirrored = FaceAsset.prepare(_mirror(face_bytes))
    index = renderer.frame_index
    renderer.set_face(mirrored)
    renderer.push_audio(pcm, sample_rate=options.sample_rate)
    renderer.flush()
    swapped = list(iter(renderer.pull, None))
    assert [f.index for f in swapped] == list(range(index, index + 6))
    assert not np.array_equal(swapped[0].image, mirrored.image)
    tail = renderer.next_frame()  # the fade is over: the new face at rest
    assert np.array_equal(tail.image, mirrored.image)
    renderer.close()


def _mirror(image_bytes: bytes) -> bytes:
    import cv2

    image = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
    ok, data = cv2.imencode(".png", image[:, ::-1])
    assert ok
    return bytes(data)


def test_backends_share_one_engine_per_model(face: FaceAsset, wav2lip_model: Path) -> None:
    options = RendererOptions(backend="wav2lip", model_path=str(wav2lip_model))
    first, second = create_backend(options), create_backend(options)
    try:
        assert isinstance(first, Wav2LipBackend) and isinstance(second, Wav2LipBackend)
        assert first.engine is second.engine and shared_engines() == 1
    finally:
        first.close()
        assert shared_engines() == 1 and not second.engine.loop.closed
        second.close()
    assert shared_engines() == 0
