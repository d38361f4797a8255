"""The onnxruntime set-up every Python-backend model of this repository shares.

The bundled tritonserver has only the Python backend, so each model (``ranker``,
``nsfw``, ``text_embedding``, ``visual_embedding``) runs its ``model.onnx`` through
onnxruntime from its ``model.py``. What they all do the same way lives here: the
thread count, the check that the built files are there, the session, build_info.json.

How a model.py finds this file. Triton's Python backend stub appends
``<repository>/<model>/<version>`` and ``<repository>/<model>`` to ``sys.path``, then
imports ``<version>.model`` (python_backend ``src/pb_stub.cc``, ``Stub::Initialize``);
the repository root is not on the path. Each model.py therefore appends its
``HERE.parents[1]`` (the repository root) and imports ``reels_onnx``. The file sits
beside the model directories, not in one: Triton takes only directories for models.
So every version of every model uses this one file, including a version published
later (``models/build_ranker.py --publish`` copies model.py alone into ``<newest + 1>/``);
a copy of the repository must copy this file too (tests/integration/
test_model_operations.py does). A version kept for rollback runs the current file, so
keep these functions compatible with every version on disk. model.py sets
``sys.dont_write_bytecode`` before the import: a ``__pycache__`` directory beside the
model directories would be listed (and, outside explicit model control, loaded) as a
model.

Errors: a missing built file is a ``TritonModelException`` naming it and the command
that builds it; Triton reports it as the load's failure reason (the previous version
keeps serving, docs/DECISIONS.md "Model operations").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import onnxruntime as ort
import triton_python_backend_utils as pb_utils

THREADS_ENV = "REELS_TRITON_INTRA_OP_THREADS"
"""Overrides every model's ``intra_op_threads`` parameter (benchmarks, a bigger box)."""


def model_config(args: dict[str, str]) -> dict[str, Any]:
    """The model's config (config.pbtxt as JSON) from ``initialize``'s ``args``."""
    config: dict[str, Any] = json.loads(args["model_config"])
    return config


def intra_op_threads(config: dict[str, Any], default: int) -> int:
    """onnxruntime's intra-op threads: ``REELS_TRITON_INTRA_OP_THREADS``, else the
    config's ``intra_op_threads`` parameter, else ``default``. Few on purpose: Triton
    and the services share the CPU; parallelism comes from batching."""
    param = config.get("parameters", {}).get("intra_op_threads", {}).get("string_value")
    return int(os.environ.get(THREADS_ENV) or param or default)


def require(here: Path, *names: str) -> list[Path]:
    """``here / name`` for each name; TritonModelException for the first one missing."""
    paths = [here / name for name in names]
    for path in paths:
        if not path.exists():
            raise pb_utils.TritonModelException(
                f"{path} is missing: build it with `bash scripts/models.sh`"
            )
    return paths


def build_info(here: Path) -> dict[str, Any]:
    """The version directory's build_info.json (written by models/build_*.py: version,
    sources, checks), or {} when there is none."""
    path = here / "build_info.json"
    info: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return info


def open_session(
    here: Path, config: dict[str, Any], *, default_threads: int, onnx: str = "model.onnx"
) -> ort.InferenceSession:
    """An onnxruntime session of ``here / onnx`` on the CPU: intra-op threads from
    :func:`intra_op_threads`, one inter-op thread, all graph optimisations."""
    (path,) = require(here, onnx)
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads(config, default_threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
