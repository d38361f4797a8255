"""Triton Python-backend model: text -> 384-d all-MiniLM-L6-v2 embedding.

The bundled tritonserver ships only the Python backend, so the ONNX graph built
by models/build_text_embedding.py runs here through onnxruntime (set up by the
repository's shared ``reels_onnx.py``). Tokenization
uses the `tokenizers` library with the tokenizer.json saved next to the model
(truncation at 256 and pad-to-longest baked in by the build), so serving needs
neither torch nor transformers. All requests of a dynamic batch are tokenized
together and run as one ONNX call.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

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
        (tokenizer_path,) = reels_onnx.require(HERE, "tokenizer.json")
        self.session = reels_onnx.open_session(HERE, config, default_threads=2)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        out = pb_utils.get_output_config_by_name(config, "EMBEDDING")
        self.out_dtype = pb_utils.triton_string_to_numpy(out["data_type"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        (emb,) = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return emb.astype(self.out_dtype, copy=False)

    def execute(self, requests: list[Any]) -> list[Any]:
        texts: list[str] = []
        counts: list[int] = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            batch = [
                v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in raw
            ]
            texts.extend(batch)
            counts.append(len(batch))
        try:
            emb = self._embed(texts) if texts else np.zeros((0, 384), dtype=self.out_dtype)
        except Exception as exc:  # answer every request rather than crash the stub
            error = pb_utils.TritonError(f"text_embedding failed: {exc}")
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
