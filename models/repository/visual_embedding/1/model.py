"""Triton Python-backend model: video frames -> 1280-d EfficientNet-Lite0 embeddings.

The bundled tritonserver ships only the Python backend, so the ONNX graph built
by models/build_visual_embedding.py runs here through onnxruntime, set up by the
repository's shared ``reels_onnx.py``.

- ``FRAMES``: uint8 RGB, NHWC, [batch, 224, 224, 3] (one request = one video's
  sampled frames); the graph scales ``(x - 127) / 128`` itself.
- ``EMBEDDING``: float32 [batch, 1280], the global average pool of the network's
  head (ReLU6 outputs, so components in [0, 6]); not normalized.

All requests of a dynamic batch are concatenated and run as one ONNX call, then
split back in order.
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

DIM = 1280


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = reels_onnx.model_config(args)
        self.session = reels_onnx.open_session(HERE, config, default_threads=2)
        out = pb_utils.get_output_config_by_name(config, "EMBEDDING")
        self.out_dtype = pb_utils.triton_string_to_numpy(out["data_type"])

    def execute(self, requests: list[Any]) -> list[Any]:
        batches = [
            pb_utils.get_input_tensor_by_name(request, "FRAMES").as_numpy() for request in requests
        ]
        counts = [len(b) for b in batches]
        try:
            if sum(counts):
                frames = np.ascontiguousarray(np.concatenate(batches), dtype=np.uint8)
                (emb,) = self.session.run(["embedding"], {"frames": frames})
                emb = emb.astype(self.out_dtype, copy=False)
            else:
                emb = np.zeros((0, DIM), dtype=self.out_dtype)
        except Exception as exc:  # answer every request rather than crash the stub
            error = pb_utils.TritonError(f"visual_embedding failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for n in counts:
            tensor = pb_utils.Tensor("EMBEDDING", emb[start : start + n])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += n
        return responses

    def finalize(self) -> None:
        self.session = None
