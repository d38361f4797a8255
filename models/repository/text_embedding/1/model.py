"""Triton Python-backend model: text -> 384-d all-MiniLM-L6-v2 embedding.

The bundled tritonserver ships only the Python backend, so the ONNX graph built
by models/build_text_embedding.py runs here through onnxruntime. Tokenization
uses the `tokenizers` library with the tokenizer.json saved next to the model
(truncation at 256 and pad-to-longest baked in by the build), so serving needs
neither torch nor transformers. All requests of a dynamic batch are tokenized
together and run as one ONNX call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        threads = int(
            os.environ.get("REELS_TRITON_INTRA_OP_THREADS")
            or params.get("intra_op_threads", {}).get("string_value", "2")
        )
        model_path = HERE / "model.onnx"
        tokenizer_path = HERE / "tokenizer.json"
        for path in (model_path, tokenizer_path):
            if not path.exists():
                raise pb_utils.TritonModelException(
                    f"{path} is missing: build it with `bash scripts/models.sh`"
                )
        options = ort.SessionOptions()
        # Few threads: Triton and the services share the CPU; parallelism comes
        # from batching, not from one request taking every core.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
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
