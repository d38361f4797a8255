"""Async client for the models Triton serves (text embeddings, for now).

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

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
