"""Triton Python-backend model ``ranker``: feature rows -> predicted watch ratio.

Input ``features`` float32 ``[N, F]``, columns in ``recsim.features.FEATURE_NAMES``
order (build_info.json next to this file lists them); output ``scores`` float32
``[N]``, the expected watch ratio (watched seconds / duration). svc_rank calls it
once per feed request with every candidate. The ONNX graph
(models/build_ranker.py) holds the whole scorer, standardisation included, and
runs here through onnxruntime (the bundled tritonserver has no ONNX backend), set up
by the repository's shared ``reels_onnx.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = Path(__file__).resolve().parent
# The shared onnxruntime set-up (../../reels_onnx.py, whose docstring says why): Triton
# puts only <model>/ and <model>/<version>/ on sys.path, not the repository root; and
# no __pycache__ may appear beside the model directories.
sys.path.append(str(HERE.parents[1]))
sys.dont_write_bytecode = True
import reels_onnx  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = reels_onnx.model_config(args)
        self.session = reels_onnx.open_session(HERE, config, default_threads=1)
        self.n_features = int(self.session.get_inputs()[0].shape[1])
        declared = int(pb_utils.get_input_config_by_name(config, "features")["dims"][-1])
        if declared != self.n_features:
            raise pb_utils.TritonModelException(
                f"config.pbtxt declares {declared} features, model.onnx takes {self.n_features}"
            )

    def _score(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"features must be [N, {self.n_features}], got {list(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        (scores,) = self.session.run(["scores"], {"features": x})
        return scores.astype(np.float32, copy=False)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                x = pb_utils.get_input_tensor_by_name(request, "features").as_numpy()
                tensor = pb_utils.Tensor("scores", self._score(x))
                responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            except Exception as exc:  # answer every request rather than crash the stub
                error = pb_utils.TritonError(f"ranker failed: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses

    def finalize(self) -> None:
        self.session = None
