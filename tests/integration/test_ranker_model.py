"""The learned ranker, served by a real tritonserver: same scores as the ONNX file."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc

from recsim.features import FEATURE_NAMES, N_FEATURES
from reels_dev.infra.process import free_port
from reels_dev.infra.triton import MODEL_REPOSITORY, triton_process

MODEL_DIR = MODEL_REPOSITORY / "ranker" / "1"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[triton_grpc.InferenceServerClient]:
    if not (MODEL_DIR / "model.onnx").exists():
        pytest.fail(f"ranker is not built ({MODEL_DIR}/model.onnx): run `bash scripts/models.sh`")
    http, grpc_port = free_port(), free_port()
    proc = triton_process(
        http, grpc_port, None, models=["ranker"], log_dir=tmp_path_factory.mktemp("triton-log")
    )
    proc.start()
    c = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        yield c
    finally:
        c.close()
        proc.stop()


def infer(client: triton_grpc.InferenceServerClient, x: np.ndarray) -> np.ndarray:
    tensor = triton_grpc.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("ranker", [tensor], outputs=[triton_grpc.InferRequestedOutput("scores")])
    return result.as_numpy("scores")


def test_build_info_lists_the_shared_feature_order() -> None:
    info = json.loads((MODEL_DIR / "build_info.json").read_text())
    assert info["feature_names"] == list(FEATURE_NAMES)


def test_triton_scores_match_onnxruntime(client: triton_grpc.InferenceServerClient) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.5, size=(257, N_FEATURES)).astype(np.float32)
    got = infer(client, x)
    want = ort.InferenceSession(str(MODEL_DIR / "model.onnx")).run(None, {"features": x})[0]
    assert got.shape == (257,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    # One candidate alone scores as it does in a batch.
    np.testing.assert_allclose(infer(client, x[3:4]), want[3:4], atol=1e-5)


def test_wrong_width_is_an_error(client: triton_grpc.InferenceServerClient) -> None:
    with pytest.raises(triton_grpc.InferenceServerException):
        infer(client, np.zeros((2, N_FEATURES + 1), dtype=np.float32))
