"""The text-embedding model, served by a real tritonserver, through ModelClient."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from reels.model_client import ModelClient
from reels_dev.infra.process import ManagedProcess, free_port
from reels_dev.infra.triton import MODEL_REPOSITORY, triton_process

MODEL_DIR = MODEL_REPOSITORY / "text_embedding" / "1"


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ManagedProcess, int]]:
    missing = [
        p.name for p in (MODEL_DIR / "model.onnx", MODEL_DIR / "tokenizer.json") if not p.exists()
    ]
    if missing:
        pytest.fail(
            f"text_embedding is not built ({', '.join(missing)} missing in {MODEL_DIR}): "
            "run `bash scripts/models.sh` (make test does this first)"
        )
    http, grpc_port = free_port(), free_port()
    proc = triton_process(
        http,
        grpc_port,
        None,
        models=["text_embedding"],
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


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


async def test_model_reports_ready(client: ModelClient) -> None:
    assert await client.ready()


async def test_similar_sentences_are_closer_than_unrelated(client: ModelClient) -> None:
    dance, dancing, tax = await client.embed_texts(["a dance video", "people dancing", "tax law"])
    assert cosine(dance, dancing) > cosine(dance, tax)
    assert cosine(dance, dancing) > 0.5 > cosine(dance, tax)


async def test_batch_returns_unit_norm_384d_vectors_in_order(client: ModelClient) -> None:
    # 70 texts: more than one server batch (64), with empty, long and non-ASCII texts.
    texts = [f"clip number {i} about cooking pasta" for i in range(66)]
    texts += ["", "Größe naïve café 東京 🐱", "word " * 600, "a dance video"]
    emb = await client.embed_texts(texts)
    assert emb.shape == (70, 384)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Row i belongs to text i, whatever batch it travelled in.
    (alone,) = await client.embed_texts(["a dance video"])
    np.testing.assert_allclose(emb[-1], alone, atol=1e-5)
    assert (await client.embed_texts([])).shape == (0, 384)


async def test_concurrent_callers_each_get_their_own_embedding(client: ModelClient) -> None:
    texts = [f"video {i}: {topic}" for i, topic in enumerate(["cats", "tax law", "surfing"] * 8)]
    expected = await client.embed_texts(texts)
    # Concurrent single-text calls are merged by Triton's dynamic batcher.
    got = await asyncio.gather(*(client.embed_texts([t]) for t in texts))
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-5)


def _word_ids(text: str) -> np.ndarray:
    """Token ids straight from the vocabulary in tokenizer.json, for a text made of
    whole lowercase words: an independent check of the server's tokenization."""
    tok = json.loads(Path(MODEL_DIR / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    return np.array([[vocab["[CLS]"], *(vocab[w] for w in text.split()), vocab["[SEP]"]]])


async def test_embedding_matches_onnxruntime_reference(client: ModelClient) -> None:
    text = "people dancing on a beach at sunset"
    ids = _word_ids(text)
    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    (reference,) = session.run(["embedding"], feeds)
    (served,) = await client.embed_texts([text])
    assert np.abs(served - reference[0]).max() < 1e-5


async def test_unreachable_server_is_not_ready() -> None:
    async with ModelClient(f"127.0.0.1:{free_port()}", timeout=1.0) as c:
        assert not await c.ready()
