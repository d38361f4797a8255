"""The learned-ranker client (svc_rank/scorer/learned.py) against a gRPC server that
speaks Triton's inference protocol (tritonclient's own service definition), so the
request the client builds, the answer it parses, its deadline and its circuit breaker
are exercised over a real gRPC connection. The model itself is built elsewhere
(models/); until it is deployed the feed ranks by rules, which test_feed.py covers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as pb
import tritonclient.grpc.service_pb2_grpc as pb_grpc

from reels_dev.infra.process import free_port
from svc_rank.scorer.features import N_FEATURES
from svc_rank.scorer.learned import LearnedRanker


class FakeRanker(pb_grpc.GRPCInferenceServiceServicer):
    """Model ``ranker`` v3: scores = the first feature column; ``delay_s`` makes it late."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.calls = 0
        self.unavailable_for = 0
        """The next calls answered as Triton does while a version is being unloaded."""
        self.versions: list[str] = []

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: object
    ) -> pb.ModelInferResponse:  # noqa: N802
        self.calls += 1
        self.versions.append(request.model_version)
        await asyncio.sleep(self.delay_s)
        if self.unavailable_for > 0:
            self.unavailable_for -= 1
            await context.abort(  # type: ignore[attr-defined]
                grpc.StatusCode.UNAVAILABLE,
                "Request for unknown model: 'ranker' version 1 is not at ready state",
            )
        (tensor,) = request.inputs
        assert tensor.name == "features" and tensor.datatype == "FP32"
        rows, cols = tensor.shape
        x = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(rows, cols)
        scores = x[:, 0].astype(np.float32)
        return pb.ModelInferResponse(
            model_name="ranker",
            model_version="3",
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(
                    name="scores", datatype="FP32", shape=[rows]
                )
            ],
            raw_output_contents=[scores.tobytes()],
        )


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRanker, str]]:
    server = grpc.aio.server()
    servicer = FakeRanker()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(0)


def features(n: int) -> np.ndarray:
    x = np.random.default_rng(0).random((n, N_FEATURES)).astype(np.float32)
    return x


async def test_one_call_scores_every_candidate(fake: tuple[FakeRanker, str]) -> None:
    servicer, addr = fake
    ranker = LearnedRanker(addr, timeout_s=0.5)
    x = features(50)
    scores = await ranker.score(x)
    assert scores is not None
    np.testing.assert_allclose(scores, x[:, 0], rtol=1e-6)
    assert servicer.calls == 1
    assert ranker.served_version == "3"
    await ranker.close()


async def test_a_late_ranker_falls_back_within_the_deadline_and_rests(
    fake: tuple[FakeRanker, str],
) -> None:
    servicer, addr = fake
    servicer.delay_s = 0.5
    ranker = LearnedRanker(addr, timeout_s=0.03, retry_s=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await ranker.score(features(10)) is None
    assert loop.time() - started < 0.2
    # The breaker is open: the next request does not even try (no deadline spent).
    calls = servicer.calls
    assert await ranker.score(features(10)) is None
    assert servicer.calls == calls
    await ranker.close()


async def test_no_ranker_at_all_is_the_rule_scorer_not_an_error() -> None:
    ranker = LearnedRanker(f"127.0.0.1:{free_port()}", timeout_s=0.03)
    assert await ranker.score(features(5)) is None
    assert ranker.last_error
    await ranker.close()


async def test_a_model_unavailable_during_a_switch_is_retried_once_and_scores(
    fake: tuple[FakeRanker, str],
) -> None:
    """A hot reload's switch (reels_dev/models.py): one "not at ready state" answer is
    retried at once, the request is still ranked, and the breaker stays closed. The
    request asks for version "" (whatever serves) and reads the version back."""
    servicer, addr = fake
    servicer.unavailable_for = 1
    ranker = LearnedRanker(addr, timeout_s=0.5, retry_s=60)
    x = features(20)
    scores = await ranker.score(x)
    assert scores is not None
    np.testing.assert_allclose(scores, x[:, 0], rtol=1e-6)
    assert servicer.calls == 2 and ranker.retries == 1 and ranker.open
    assert servicer.versions == ["", ""]
    assert ranker.served_version == "3"
    await ranker.close()


async def test_a_model_still_unavailable_after_the_retry_falls_back_to_rules(
    fake: tuple[FakeRanker, str],
) -> None:
    servicer, addr = fake
    servicer.unavailable_for = 2
    ranker = LearnedRanker(addr, timeout_s=0.5, retry_s=60)
    assert await ranker.score(features(5)) is None
    assert servicer.calls == 2 and "not at ready state" in ranker.last_error
    assert not ranker.open
    await ranker.close()
