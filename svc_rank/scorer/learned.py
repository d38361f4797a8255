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

Hot reload (reels_dev/models.py, docs/DECISIONS.md "Model operations"): by default a
request asks for model_version "" (whatever version Triton serves), so it is never
pinned to a version that a reload is unloading; the version that answered is read
back from Triton's response (``served_version``, shown in the feed's ``scorer`` as
``ranker:<version>``). An answer "model not ready / unknown version" (the switch of a
load, or an experiment arm's version being unloaded) is retried once at once, within
the same deadline; only a second failure falls back to the rule scorer and opens the
breaker. A new served version is warmed up by the background loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np
import tritonclient.grpc.aio as triton_grpc

from reels.model_client import is_model_unavailable, record_inference

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
        self.retries = 0
        """Calls retried because the model was momentarily unavailable (a reload)."""

    def _conn(self) -> triton_grpc.InferenceServerClient:
        if self._client is None:
            self._client = triton_grpc.InferenceServerClient(self.addr)
        return self._client

    @property
    def open(self) -> bool:
        """Whether the breaker lets a call through now."""
        return self._clock() >= self._closed_until

    async def _infer(
        self, tensor: triton_grpc.InferInput, version: str, deadline: float
    ) -> triton_grpc.InferResult:
        """One call, and one immediate retry when the model is momentarily unavailable
        (a load's switch), both within ``deadline`` (a ``perf_counter`` time)."""
        for attempt in (1, 2):
            left = max(deadline - time.perf_counter(), 0.001)
            try:
                return await asyncio.wait_for(
                    self._conn().infer(
                        self.model,
                        [tensor],
                        model_version=version,
                        outputs=[triton_grpc.InferRequestedOutput("scores")],
                        client_timeout=left,
                    ),
                    left * 2,
                )
            except Exception as exc:
                if attempt == 2 or not is_model_unavailable(exc):
                    raise
                self.retries += 1
                log.info("ranker %s unavailable, retrying once: %s", self.model, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def score(self, features: np.ndarray, version: str | None = None) -> np.ndarray | None:
        """Scores for each row, or None (rule scorer) when the ranker cannot answer."""
        if features.shape[0] == 0 or not self.open:
            return None
        started = time.perf_counter()
        outcome = "ok"
        answered = ""
        try:
            tensor = triton_grpc.InferInput("features", list(features.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            result = await self._infer(
                tensor, self.version if version is None else version, started + self.timeout_s
            )
            answered = str(result.get_response().model_version or "")
            scores = result.as_numpy("scores")
            if scores is None or scores.reshape(-1).shape[0] != features.shape[0]:
                raise ValueError(
                    f"ranker answered shape {None if scores is None else scores.shape}"
                )
            scores = scores.reshape(-1).astype(np.float64)
            if not np.all(np.isfinite(scores)):
                raise ValueError("ranker answered non-finite scores")
            if answered and answered != self.served_version and self.served_version:
                log.info("ranker %s now answers with version %s", self.model, answered)
            self.served_version = answered or self.version or "latest"
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
            record_inference(self.model, answered, outcome, started)

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
