"""Async client for the models Triton serves (text and video-frame embeddings).

Services never load a model themselves: the weights, the tokenizer and the
threads that run them live in Triton, so a service stays small and any number
of service instances share one batched model. This module hides the tensor
plumbing (BYTES tensors, batch limits) behind plain Python types.

Versions: every request asks for model_version "" (whatever version Triton serves
now), so a hot reload (reels_dev/models.py: a new version loaded, the old one
unloaded) never strands a request on a version being unloaded. The version that
actually answered comes back in Triton's response (``model_version``), and the
``*_versioned`` methods return it: that is the version a published video records,
never a constant. Each call's duration goes to ``deep_model.inference_duration_ms``
by model, version and outcome.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import tritonclient.grpc.aio as triton_grpc
from tritonclient.utils import InferenceServerException

from reels import faults, metrics
from reels.config import platform

DEFAULT_ADDR = "127.0.0.1:18001"
TEXT_EMBEDDING_MODEL = "text_embedding"
TEXT_EMBEDDING_DIM = 384
# The model's max_batch_size (models/repository/text_embedding/config.pbtxt):
# bigger lists are split so callers need not know the server's limit.
MAX_BATCH = 64
VISUAL_EMBEDDING_MODEL = "visual_embedding"
VISUAL_EMBEDDING_DIM = 1280
# Frames must arrive scaled to this size (models/repository/visual_embedding/).
FRAME_SIZE = 224
# visual_embedding's max_batch_size: one video's frames (at most 16) fit one
# request; longer arrays are split.
MAX_FRAME_BATCH = 32


class ModelError(RuntimeError):
    """Triton could not answer; callers map it to UNAVAILABLE and retry later."""


# What Triton answers while a model (or the version asked for) is not loaded: during a
# hot reload's switch, or between an unload and a load. Worth one immediate retry.
_UNAVAILABLE_MARKERS = (
    "unknown model",
    "is not at ready state",
    "not ready",
    "unavailable",
    "is not found",
    "has no available versions",
)


def is_model_unavailable(exc: BaseException) -> bool:
    """Whether an inference error means "the model is not loaded right now" (a
    transient state of a load/unload), as opposed to a bad request or a timeout."""
    if isinstance(exc, InferenceServerException):
        status = (exc.status() or "").upper()
        if "DEADLINE" in status:
            return False
        text = f"{status} {exc.message() or ''}".lower()
    else:
        text = str(exc).lower()
        if "deadline" in text:
            return False
    return any(marker in text for marker in _UNAVAILABLE_MARKERS)


def served_version(result: triton_grpc.InferResult) -> str:
    """The version of the model that produced ``result`` (Triton's response field)."""
    return str(result.get_response().model_version or "")


def record_inference(model: str, version: str, outcome: str, started: float) -> None:
    """One inference call in ``deep_model.inference_duration_ms`` (ms since ``started``,
    a ``time.perf_counter()``)."""
    metrics.deep_model_inference_duration.record(
        (time.perf_counter() - started) * 1000,
        {"model": model, "version": version or "unknown", "outcome": outcome},
    )


def triton_addr() -> str:
    return platform().triton_addr or DEFAULT_ADDR


class ModelClient:
    """One gRPC channel to Triton, opened lazily on first use.

    Lazy because grpc.aio channels belong to the event loop they are created in,
    and services build their clients before the loop runs.
    """

    def __init__(self, addr: str | None = None, *, timeout: float = 10.0) -> None:
        self.addr = addr or triton_addr()
        self.timeout = timeout
        self._client: triton_grpc.InferenceServerClient | None = None

    def _conn(self) -> triton_grpc.InferenceServerClient:
        if self._client is None:
            self._client = triton_grpc.InferenceServerClient(self.addr)
        return self._client

    async def ready(self, model: str = TEXT_EMBEDDING_MODEL) -> bool:
        """Whether the model is loaded (some version READY), for health checks that
        should fail while Triton is still starting. Not the server's readiness: that is
        strict, and one version of another model that failed to load makes it false
        while this model serves."""
        try:
            await faults.inject("triton", InferenceServerException)
            return bool(await self._conn().is_model_ready(model, client_timeout=self.timeout))
        except InferenceServerException:
            return False

    async def _infer(
        self, model: str, tensor: triton_grpc.InferInput, output: str
    ) -> triton_grpc.InferResult:
        """One request to whatever version of ``model`` Triton serves (version ""),
        retried once when the model is momentarily unavailable (a reload's switch)."""
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                # The one choke point for fault injection (reels.faults, target triton).
                await faults.inject("triton", InferenceServerException)
                result = await self._conn().infer(
                    model,
                    [tensor],
                    model_version="",
                    outputs=[triton_grpc.InferRequestedOutput(output)],
                    client_timeout=self.timeout,
                )
            except InferenceServerException as exc:
                if attempt == 1 and is_model_unavailable(exc):
                    await asyncio.sleep(0.05)
                    continue
                record_inference(model, "", "error", started)
                raise ModelError(f"{model} at {self.addr}: {exc.message()}") from exc
            record_inference(model, served_version(result), "ok", started)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _embed_batch(self, texts: list[str]) -> tuple[np.ndarray, str]:
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        tensor = triton_grpc.InferInput("TEXT", [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(data)
        result = await self._infer(TEXT_EMBEDDING_MODEL, tensor, "EMBEDDING")
        emb = result.as_numpy("EMBEDDING")
        if emb is None or emb.shape != (len(texts), TEXT_EMBEDDING_DIM):
            shape = None if emb is None else emb.shape
            raise ModelError(f"{TEXT_EMBEDDING_MODEL} returned shape {shape} for {len(texts)}")
        return emb, served_version(result)

    async def embed_texts_versioned(self, texts: list[str]) -> tuple[np.ndarray, str]:
        """:meth:`embed_texts` and the model version that answered (Triton's response).
        Raises ModelError if the chunks of one call were answered by different
        versions (a reload in between): vectors of two versions must not mix."""
        if not texts:
            return np.zeros((0, TEXT_EMBEDDING_DIM), dtype=np.float32), ""
        chunks = [texts[i : i + MAX_BATCH] for i in range(0, len(texts), MAX_BATCH)]
        parts = await asyncio.gather(*(self._embed_batch(c) for c in chunks))
        version = _one_version(TEXT_EMBEDDING_MODEL, [v for _, v in parts])
        return np.concatenate([p for p, _ in parts], axis=0).astype(np.float32, copy=False), version

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 embeddings, shape [len(texts), 384]; the dot product
        of two rows is their cosine similarity."""
        return (await self.embed_texts_versioned(texts))[0]

    async def _embed_frames_batch(self, frames: np.ndarray) -> tuple[np.ndarray, str]:
        tensor = triton_grpc.InferInput("FRAMES", list(frames.shape), "UINT8")
        tensor.set_data_from_numpy(frames)
        result = await self._infer(VISUAL_EMBEDDING_MODEL, tensor, "EMBEDDING")
        emb = result.as_numpy("EMBEDDING")
        if emb is None or emb.shape != (len(frames), VISUAL_EMBEDDING_DIM):
            shape = None if emb is None else emb.shape
            raise ModelError(f"{VISUAL_EMBEDDING_MODEL} returned shape {shape} for {len(frames)}")
        return emb, served_version(result)

    async def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """:meth:`embed_frames_versioned` without the version."""
        return (await self.embed_frames_versioned(frames))[0]

    async def embed_frames_versioned(self, frames: np.ndarray) -> tuple[np.ndarray, str]:
        """EfficientNet-Lite0 (ImageNet) embeddings of video frames.

        ``frames``: uint8 RGB, shape [n, 224, 224, 3] (height, width, channel),
        already scaled to 224x224 (e.g. ffmpeg ``scale=224:224,format=rgb24``,
        raw bytes reshaped). Send one video's sampled frames (at most 16) in one
        call: that is one Triton request; arrays past 32 frames are split.

        Returns float32 [n, 1280], row i for frame i: the network's globally
        average-pooled head features (ReLU6, so each component is in [0, 6]),
        *not* normalized. For a video vector, take the mean of the rows and
        L2-normalize it.

        Also returns the model version that answered (Triton's response).

        Raises ValueError for a wrong shape or dtype (a caller bug, never
        retried) and ModelError when Triton is down, times out (``timeout``
        seconds per request) or answers badly: treat that as transient.
        """
        frames = np.asarray(frames)
        expected = (FRAME_SIZE, FRAME_SIZE, 3)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != expected:
            raise ValueError(
                f"frames must be uint8 [n, {FRAME_SIZE}, {FRAME_SIZE}, 3], "
                f"got {frames.dtype} {list(frames.shape)}"
            )
        if len(frames) == 0:
            return np.zeros((0, VISUAL_EMBEDDING_DIM), dtype=np.float32), ""
        frames = np.ascontiguousarray(frames)
        chunks = [frames[i : i + MAX_FRAME_BATCH] for i in range(0, len(frames), MAX_FRAME_BATCH)]
        parts = await asyncio.gather(*(self._embed_frames_batch(c) for c in chunks))
        version = _one_version(VISUAL_EMBEDDING_MODEL, [v for _, v in parts])
        return np.concatenate([p for p, _ in parts], axis=0).astype(np.float32, copy=False), version

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _one_version(model: str, versions: list[str]) -> str:
    if len(set(versions)) > 1:
        raise ModelError(f"{model}: one call answered by versions {sorted(set(versions))}")
    return versions[0] if versions else ""
