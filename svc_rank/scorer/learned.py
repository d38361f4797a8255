"""The learned ranker: Triton model ``ranker``, one call per request for all candidates.

Contract: input ``features`` float32 ``[-1, F]`` (columns in
:data:`recsim.features.FEATURE_NAMES` order, built by :mod:`svc_rank.scorer.features`),
output ``scores`` float32 ``[-1]`` (expected watch ratio, higher first). The call has
a deadline (30 ms by default, ``REELS_RANK_RANKER_TIMEOUT_S``); a timeout, an error,
a missing model or a wrong-shaped answer returns None and the rule scorer ranks instead.

A circuit breaker keeps an absent or failing ranker from costing every request its
deadline: after a failure the ranker is not called for ``retry_s`` (5 s), then one
request tries again. Every call's duration is recorded in
``deep_model.inference_duration_ms`` by outcome.

Warm-up (:meth:`LearnedRanker.keep_warm`, a background loop): Triton's first
inference of a freshly loaded model, and the first call on a new gRPC channel, take
far longer than the 30 ms deadline (measured under ``make up``: the first feed
request timed out and the rule scorer served it). The loop sends a warm-up batch
with a generous deadline (``warm_timeout_s``) at start and again after any failure,
and closes the breaker as soon as the ranker answers — requests never pay for a cold
model, and a ranker that comes back is used within a second, not after ``retry_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np
import tritonclient.grpc.aio as triton_grpc

from reels import metrics

log = logging.getLogger(__name__)


class LearnedRanker:
    def __init__(
        self,
        addr: str,
        *,
        model: str = "ranker",
        version: str = "",
        timeout_s: float = 0.030,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addr = addr
        self.model = model
        self.version = version
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._clock = clock
        self._client: triton_grpc.InferenceServerClient | None = None
        self._closed_until = 0.0
        self.last_error = ""
        self.served_version = ""
        """The model version of the last successful answer (for ``scorer``)."""
        self.warm = False
        """Whether a warm-up batch has been answered since the last failure."""

    def _conn(self) -> triton_grpc.InferenceServerClient:
        if self._client is None:
            self._client = triton_grpc.InferenceServerClient(self.addr)
        return self._client

    @property
    def open(self) -> bool:
        """Whether the breaker lets a call through now."""
        return self._clock() >= self._closed_until

    async def score(self, features: np.ndarray, version: str | None = None) -> np.ndarray | None:
        """Scores for each row, or None (rule scorer) when the ranker cannot answer."""
        if features.shape[0] == 0 or not self.open:
            return None
        started = time.perf_counter()
        outcome = "ok"
        try:
            tensor = triton_grpc.InferInput("features", list(features.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            result = await asyncio.wait_for(
                self._conn().infer(
                    self.model,
                    [tensor],
                    model_version=self.version if version is None else version,
                    outputs=[triton_grpc.InferRequestedOutput("scores")],
                    client_timeout=self.timeout_s,
                ),
                self.timeout_s * 2,
            )
            scores = result.as_numpy("scores")
            if scores is None or scores.reshape(-1).shape[0] != features.shape[0]:
                raise ValueError(
                    f"ranker answered shape {None if scores is None else scores.shape}"
                )
            scores = scores.reshape(-1).astype(np.float64)
            if not np.all(np.isfinite(scores)):
                raise ValueError("ranker answered non-finite scores")
            self.served_version = result.get_response().model_version or self.version or "latest"
            return scores
        except Exception as exc:  # noqa: BLE001 - any failure means: rank by rules
            outcome = (
                "timeout" if isinstance(exc, TimeoutError) or "Deadline" in str(exc) else "error"
            )
            message = f"{type(exc).__name__}: {exc}"[:300]
            if message != self.last_error:
                log.warning("ranker unavailable, rule scorer for %.0fs: %s", self.retry_s, message)
            self.last_error = message
            self._closed_until = self._clock() + self.retry_s
            self.warm = False
            return None
        finally:
            metrics.deep_model_inference_duration.record(
                (time.perf_counter() - started) * 1000, {"outcome": outcome}
            )

    async def keep_warm(
        self, n_features: int, *, batch: int = 64, warm_timeout_s: float = 5.0, poll_s: float = 1.0
    ) -> None:
        """Background loop (never returns): warm the model whenever it is not warm.

        The warm-up batch is ``float32 [batch, n_features]`` zeros, sent with a
        ``warm_timeout_s`` deadline; on success the breaker closes at once."""
        rows = np.zeros((batch, n_features), dtype=np.float32)
        while True:
            if not self.warm:
                try:
                    tensor = triton_grpc.InferInput("features", list(rows.shape), "FP32")
                    tensor.set_data_from_numpy(rows)
                    await asyncio.wait_for(
                        self._conn().infer(
                            self.model,
                            [tensor],
                            model_version=self.version,
                            outputs=[triton_grpc.InferRequestedOutput("scores")],
                            client_timeout=warm_timeout_s,
                        ),
                        warm_timeout_s * 2,
                    )
                except Exception as exc:  # noqa: BLE001 - not there yet: try again later
                    log.debug("ranker warm-up failed: %r", exc)
                else:
                    self.warm = True
                    self._closed_until = 0.0
                    log.info("ranker %s warm: requests may use it", self.model)
            await asyncio.sleep(poll_s)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
