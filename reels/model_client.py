"""Async client for the models Triton serves (text and video-frame embeddings).

Services never load a model themselves: the weights, the tokenizer and the
threads that run them live in Triton, so a service stays small and any number
of service instances share one batched model. This module hides the tensor
plumbing (BYTES tensors, batch limits) behind plain Python types.
"""

from __future__ import annotations

import asyncio

import numpy as np
import tritonclient.grpc.aio as triton_grpc
from tritonclient.utils import InferenceServerException

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
        """Whether the server is up *and* the model loaded, for health checks
        that should fail while Triton is still starting."""
        try:
            client = self._conn()
            return bool(
                await client.is_server_ready(client_timeout=self.timeout)
                and await client.is_model_ready(model, client_timeout=self.timeout)
            )
        except InferenceServerException:
            return False

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        tensor = triton_grpc.InferInput("TEXT", [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(data)
        try:
            result = await self._conn().infer(
                TEXT_EMBEDDING_MODEL,
                [tensor],
                outputs=[triton_grpc.InferRequestedOutput("EMBEDDING")],
                client_timeout=self.timeout,
            )
        except InferenceServerException as exc:
            raise ModelError(f"{TEXT_EMBEDDING_MODEL} at {self.addr}: {exc.message()}") from exc
        emb = result.as_numpy("EMBEDDING")
        if emb is None or emb.shape != (len(texts), TEXT_EMBEDDING_DIM):
            shape = None if emb is None else emb.shape
            raise ModelError(f"{TEXT_EMBEDDING_MODEL} returned shape {shape} for {len(texts)}")
        return emb

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 embeddings, shape [len(texts), 384]; the dot product
        of two rows is their cosine similarity."""
        if not texts:
            return np.zeros((0, TEXT_EMBEDDING_DIM), dtype=np.float32)
        chunks = [texts[i : i + MAX_BATCH] for i in range(0, len(texts), MAX_BATCH)]
        parts = await asyncio.gather(*(self._embed_batch(c) for c in chunks))
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

    async def _embed_frames_batch(self, frames: np.ndarray) -> np.ndarray:
        tensor = triton_grpc.InferInput("FRAMES", list(frames.shape), "UINT8")
        tensor.set_data_from_numpy(frames)
        try:
            result = await self._conn().infer(
                VISUAL_EMBEDDING_MODEL,
                [tensor],
                outputs=[triton_grpc.InferRequestedOutput("EMBEDDING")],
                client_timeout=self.timeout,
            )
        except InferenceServerException as exc:
            raise ModelError(f"{VISUAL_EMBEDDING_MODEL} at {self.addr}: {exc.message()}") from exc
        emb = result.as_numpy("EMBEDDING")
        if emb is None or emb.shape != (len(frames), VISUAL_EMBEDDING_DIM):
            shape = None if emb is None else emb.shape
            raise ModelError(f"{VISUAL_EMBEDDING_MODEL} returned shape {shape} for {len(frames)}")
        return emb

    async def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """EfficientNet-Lite0 (ImageNet) embeddings of video frames.

        ``frames``: uint8 RGB, shape [n, 224, 224, 3] (height, width, channel),
        already scaled to 224x224 (e.g. ffmpeg ``scale=224:224,format=rgb24``,
        raw bytes reshaped). Send one video's sampled frames (at most 16) in one
        call: that is one Triton request; arrays past 32 frames are split.

        Returns float32 [n, 1280], row i for frame i: the network's globally
        average-pooled head features (ReLU6, so each component is in [0, 6]),
        *not* normalized. For a video vector, take the mean of the rows and
        L2-normalize it.

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
            return np.zeros((0, VISUAL_EMBEDDING_DIM), dtype=np.float32)
        frames = np.ascontiguousarray(frames)
        chunks = [frames[i : i + MAX_FRAME_BATCH] for i in range(0, len(frames), MAX_FRAME_BATCH)]
        parts = await asyncio.gather(*(self._embed_frames_batch(c) for c in chunks))
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
