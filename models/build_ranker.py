"""Build the learned ranker Triton serves (model ``ranker``): train, export to ONNX, verify.

Data: the event logs of the simulated world (``recsim``, ``../shared/RECSYS.md``)
until the platform has its own event history; the data builder
(``recsim.dataset.training_set``) reads only logs and catalog metadata, the
form ClickHouse's ``video.events`` would take. Training: ``recsim.train.fit``,
the same run ``make eval-feed`` evaluates per seed (numpy MLP, seeded, so the
same seed gives the same weights and the same ONNX bytes).

The ONNX graph (opset 17) is the whole scorer: standardisation -> MLP ->
``scores``. Input ``features`` float32 ``[N, F]`` in ``recsim.features.FEATURE_NAMES``
order; output ``scores`` float32 ``[N]`` (predicted expected watch ratio). The
feature list, seed and training summary are stored in the model's metadata and
in ``build_info.json``. The build refuses to write a model whose onnxruntime
output differs from the numpy model by 1e-4 or more.

Run in the build venv (scripts/models.sh): ``python models/build_ranker.py``.
Needs ``onnx`` and ``onnxruntime`` (not torch).

Versions: ``--out`` writes one version directory (scripts/models.sh: ``ranker/1``).
``--publish`` (a re-training) writes the next one, ``ranker/<newest + 1>/``, with the
newest version's model.py (which loads the repository's shared ``reels_onnx.py`` from
the repository root, so nothing else is copied), into a temporary directory renamed
into place at the end, so Triton never sees half a version;
``python -m reels_dev.models load ranker`` then serves it without a restart, and
``rollback ranker --to N`` goes back. build_info.json records the version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: recsim

from recsim.features import FEATURE_NAMES, N_FEATURES  # noqa: E402
from recsim.ranker import Ranker  # noqa: E402
from recsim.train import LABEL_WINDOW, fit  # noqa: E402
from recsim.world import WorldConfig  # noqa: E402

DEFAULT_OUT = HERE / "repository" / "ranker" / "1"
OPSET = 17
TOLERANCE = 1e-4


def to_onnx(ranker: Ranker, metadata: dict[str, str]) -> onnx.ModelProto:
    """The ranker as one ONNX graph: ``features [N, F]`` -> ``scores [N]``, float32."""
    inits = [
        numpy_helper.from_array(ranker.mean.astype(np.float32), "mean"),
        numpy_helper.from_array(ranker.std.astype(np.float32), "std"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["h0"]),
    ]
    h = "h0"
    for i, (w, b) in enumerate(ranker.layers):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i}"))
        nodes.append(helper.make_node("MatMul", [h, f"w{i}"], [f"mm{i}"]))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"lin{i}"]))
        if i < len(ranker.layers) - 1:
            nodes.append(helper.make_node("Relu", [f"lin{i}"], [f"h{i + 1}"]))
            h = f"h{i + 1}"
        else:
            nodes.append(helper.make_node("Reshape", [f"lin{i}", "flat"], ["scores"]))
    graph = helper.make_graph(
        nodes,
        "ranker",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N"])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="reels/models/build_ranker.py",
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def next_version_dir(model_dir: Path) -> tuple[Path, Path]:
    """(the next version directory, a temporary directory to build it in) under
    ``model_dir``; the temporary one already holds the newest version's model.py."""
    versions = sorted(int(d.name) for d in model_dir.iterdir() if d.name.isdigit() and d.is_dir())
    if not versions:
        sys.exit(f"build_ranker: no version under {model_dir} to publish after")
    if not (model_dir.parent / "reels_onnx.py").is_file():
        sys.exit(f"build_ranker: {model_dir.parent} has no reels_onnx.py, which model.py loads")
    final = model_dir / str(versions[-1] + 1)
    tmp = model_dir / f".{final.name}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copy2(model_dir / str(versions[-1]) / "model.py", tmp / "model.py")
    return final, tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0, help="world + training seed")
    ap.add_argument("--stamp", default="", help="recorded in build_info.json for scripts/models.sh")
    ap.add_argument(
        "--check-reproducible", action="store_true", help="train twice and require equal bytes"
    )
    ap.add_argument(
        "--publish",
        action="store_true",
        help="write the next version directory beside --out's (ranker/<newest + 1>/)",
    )
    args = ap.parse_args()
    final = args.out
    if args.publish:
        final, args.out = next_version_dir(args.out.parent)
    started = time.monotonic()
    config = replace(WorldConfig(), seed=args.seed)
    fitted = fit(config)
    ranker = fitted.ranker
    metadata = {
        "feature_names": json.dumps(list(FEATURE_NAMES)),
        "target": "expected watch ratio (watched seconds / duration)",
        "seed": str(args.seed),
        "source": "recsim simulated event logs (RECSYS.md)",
    }
    data = to_onnx(ranker, metadata).SerializeToString()
    if args.check_reproducible:
        again = to_onnx(fit(config).ranker, metadata).SerializeToString()
        if again != data:
            sys.exit("build_ranker: two trainings with the same seed differ")
        print("build_ranker: same seed -> identical ONNX bytes (checked)")

    # Verify onnxruntime against the numpy model on real feature rows: the
    # validation day and a spread of synthetic rows around it.
    from recsim.dataset import training_set

    T = config.days
    check = training_set(fitted.catalog, fitted.log, range(T, T + 1)).x
    rng = np.random.default_rng(args.seed)
    check = np.vstack([check, check[rng.integers(0, len(check), 256)] * 1.5, check[:1]])
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run(["scores"], {"features": check.astype(np.float32)})[0]
    want = ranker.predict(check)
    diff = float(np.max(np.abs(got - want)))
    if got.shape != (len(check),) or diff >= TOLERANCE:
        sys.exit(f"build_ranker: onnxruntime disagrees with numpy (max |diff| {diff:.2e})")
    empty = sess.run(["scores"], {"features": np.zeros((0, N_FEATURES), np.float32)})[0]
    assert empty.shape == (0,)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.onnx").write_bytes(data)
    info = {
        "model": "ranker",
        "feature_names": list(FEATURE_NAMES),
        "input": {"name": "features", "dtype": "float32", "shape": [-1, N_FEATURES]},
        "output": {"name": "scores", "dtype": "float32", "shape": [-1]},
        "target": metadata["target"],
        "seed": args.seed,
        "world": asdict(config),
        "label_days": [max(2, T - LABEL_WINDOW + 1), T],
        "train_rows": fitted.train_rows,
        "valid_rows": fitted.valid_rows,
        "valid_mse_per_epoch": [round(v, 6) for v in ranker.history],
        "tuned_formula_weights": list(fitted.tuned_weights),
        "onnx_max_abs_diff": diff,
        "onnx_sha256": sha256_bytes(data),
        "opset": OPSET,
        "version": final.name,
        "stamp": args.stamp,
        "seconds": round(time.monotonic() - started, 1),
    }
    (args.out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    if args.out != final:
        args.out.rename(final)  # the whole version appears at once
        args.out = final
    print(
        f"build_ranker: {args.out / 'model.onnx'} ({len(data)} bytes, sha256 "
        f"{info['onnx_sha256'][:12]}), {fitted.train_rows} training rows, "
        f"onnx vs numpy max |diff| {diff:.1e}, {info['seconds']}s"
    )


if __name__ == "__main__":
    main()
