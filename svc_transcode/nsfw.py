"""The NSFW classifier Svc_transcode asks about a video's frames: Triton's ``nsfw`` model.

One request per video carries all its sampled frames (svc_transcode/frames.py: uint8
RGB [n, 224, 224, 3], n <= 16, the same frames the visual embedding uses); Triton
answers one P(nsfw) per frame and the model build's version
(models/repository/nsfw/). The preprocessing the model needs runs inside Triton
(model.py), so this client sends the frames as they are.

Its own client on reels.model_client's pattern (one lazy tritonclient gRPC channel);
``NsfwUnavailable`` is transient (Triton down, too slow, a bad answer): the worker
retries the job rather than publish a video nobody checked.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tritonclient.grpc.aio as triton_grpc
from tritonclient.utils import InferenceServerException

from reels.model_client import is_model_unavailable, record_inference, served_version

NSFW_MODEL = "nsfw"
MAX_FRAMES = 16
DEFAULT_TIMEOUT_S = 20.0


# What the creator sees while the model is out (never the address or Triton's words).
MODEL_OUT_PUBLIC = "moderation model unavailable, retrying"


class NsfwUnavailable(Exception):
    """Triton did not answer (down, timed out, bad reply); transient."""


class NsfwModelOut(NsfwUnavailable):
    """An outage of the model, not of this video: Triton unreachable (connection
    refused, UNAVAILABLE), too slow (deadline), or ``nsfw`` not loaded ("unknown
    model", "has no available versions"). The worker waits it out with a capped
    backoff without spending the job's attempts (svc_transcode/worker.py)."""


def _is_outage(exc: InferenceServerException) -> bool:
    status = (exc.status() or "").upper()
    return "UNAVAILABLE" in status or "DEADLINE" in status or is_model_unavailable(exc)


@dataclass(frozen=True)
class FrameScores:
    """One video's frames as the model scored them."""

    scores: np.ndarray  # float32 [n], P(nsfw) of frame i
    model_name: str
    model_version: str


class NsfwClassifier(Protocol):
    @property
    def enabled(self) -> bool:
        """False: moderation is switched off (every video publishes, nothing is scored)."""
        ...

    async def score(self, frames: np.ndarray) -> FrameScores: ...

    async def close(self) -> None: ...


def check_frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` as uint8 [1 <= n <= 16, H, W, 3]; ValueError otherwise (a caller bug)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be uint8 [n, H, W, 3], got {frames.dtype} {frames.shape}")
    if not 1 <= len(frames) <= MAX_FRAMES:
        raise ValueError(f"1 to {MAX_FRAMES} frames per video, got {len(frames)}")
    return np.ascontiguousarray(frames)


class TritonNsfwClassifier:
    """Triton's ``nsfw`` model at ``addr`` (``REELS_TRITON_ADDR``)."""

    enabled = True

    def __init__(
        self, addr: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, model: str = NSFW_MODEL
    ) -> None:
        self.addr = addr
        self.timeout_s = timeout_s
        self.model = model
        self._client: triton_grpc.InferenceServerClient | None = None

    def _conn(self) -> triton_grpc.InferenceServerClient:
        # Lazy: grpc.aio channels belong to the loop they are created in.
        if self._client is None:
            self._client = triton_grpc.InferenceServerClient(self.addr)
        return self._client

    async def score(self, frames: np.ndarray) -> FrameScores:
        """P(nsfw) of each frame, in ONE request; NsfwUnavailable when Triton fails."""
        frames = check_frames(frames)
        tensor = triton_grpc.InferInput("FRAMES", list(frames.shape), "UINT8")
        tensor.set_data_from_numpy(frames)
        outputs = [
            triton_grpc.InferRequestedOutput("nsfw_score"),
            triton_grpc.InferRequestedOutput("model_version"),
        ]
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(
                self._conn().infer(
                    self.model, [tensor], outputs=outputs, client_timeout=self.timeout_s
                ),
                self.timeout_s + 1.0,
            )
        except TimeoutError as exc:
            record_inference(self.model, "", "error", started)
            raise NsfwModelOut(
                f"{self.model} at {self.addr}: no answer within {self.timeout_s:.0f}s"
            ) from exc
        except InferenceServerException as exc:
            record_inference(self.model, "", "error", started)
            kind = NsfwModelOut if _is_outage(exc) else NsfwUnavailable
            raise kind(f"{self.model} at {self.addr}: {exc.message()}") from exc
        except OSError as exc:
            record_inference(self.model, "", "error", started)
            raise NsfwModelOut(f"{self.model} at {self.addr}: {exc!r}") from exc
        except Exception as exc:  # noqa: BLE001 - grpc errors of any kind: an outage
            record_inference(self.model, "", "error", started)
            raise NsfwUnavailable(f"{self.model} at {self.addr}: {exc!r}") from exc
        # deep_model.inference_duration_ms, labelled like the other models' calls.
        record_inference(self.model, served_version(result), "ok", started)
        scores = result.as_numpy("nsfw_score")
        version = result.as_numpy("model_version")
        if scores is None or scores.shape != (len(frames),) or not np.all(np.isfinite(scores)):
            shape = None if scores is None else scores.shape
            raise NsfwUnavailable(
                f"{self.model} returned scores of shape {shape} for {len(frames)}"
            )
        raw = version.reshape(-1)[0] if version is not None and version.size else b""
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return FrameScores(scores.astype(np.float32), self.model, text or "unknown")

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


class NoNsfwClassifier:
    """``REELS_NSFW_MODERATION=off``: nothing is scored; every video publishes."""

    enabled = False

    async def score(self, frames: np.ndarray) -> FrameScores:
        raise NsfwUnavailable("NSFW moderation is switched off")

    async def close(self) -> None:
        return None
