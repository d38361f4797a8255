"""Embeddings a published video carries in its video.published event.

The text embedding (title, description, hashtags; MiniLM, 384-d, unit norm) comes
from Triton. Where no models are deployed, ``REELS_EMBEDDINGS=off`` publishes videos
without it (svc_rank then cannot recall them by similarity, only by trending,
followees and freshness). The visual embedding (EfficientNet-Lite0 frame
embeddings) is a later issue: ``visual_embedding`` stays empty until then.
"""

from __future__ import annotations

from typing import Protocol

from reels.model_client import ModelClient, ModelError


class EmbeddingUnavailable(Exception):
    """The model server did not answer; transient (the job is retried with backoff)."""


class TextEmbedder(Protocol):
    async def embed_text(self, text: str) -> list[float]: ...

    async def close(self) -> None: ...


def video_text(title: str, description: str, hashtags: list[str]) -> str:
    """What the text model sees: the words a viewer would search for."""
    tags = " ".join(f"#{tag.lstrip('#')}" for tag in hashtags if tag)
    return "\n".join(part for part in (title.strip(), description.strip(), tags) if part)


class TritonTextEmbedder:
    """MiniLM through Triton at ``addr`` (``REELS_TRITON_ADDR``)."""

    def __init__(self, addr: str) -> None:
        self.client = ModelClient(addr)

    async def embed_text(self, text: str) -> list[float]:
        try:
            (vector,) = await self.client.embed_texts([text])
        except ModelError as exc:
            raise EmbeddingUnavailable(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - tritonclient/grpc connection errors of any kind
            raise EmbeddingUnavailable(f"text embedding at {self.client.addr}: {exc!r}") from exc
        return [float(x) for x in vector]

    async def close(self) -> None:
        await self.client.close()


class NoTextEmbedder:
    """``REELS_EMBEDDINGS=off``: publish without a text embedding."""

    async def embed_text(self, text: str) -> list[float]:
        return []

    async def close(self) -> None:
        return None
