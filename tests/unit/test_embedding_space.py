"""The shared video embedding space (reels/embedding_space.py) and the frame plumbing
of svc_transcode (frames.py): pure logic, no Triton."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reels import embedding_space as es
from svc_transcode.embeddings import vectors_of, video_text
from svc_transcode.frames import frame_times, pack_frames, sample_command, unpack_frames


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_projection_is_the_pinned_matrix() -> None:
    p = es.projection_matrix()
    assert p.shape == (1664, 256) and p.dtype == np.float32
    assert not p.flags.writeable
    # A different NumPy generator stream or seed would change these.
    fingerprint = (float(p[:8, :8].sum()), float(p[0, 0]))
    assert fingerprint == pytest.approx(es.PROJECTION_FINGERPRINT, abs=1e-6)
    assert es.MODEL_VERSION == "visual_embedding@1+text_embedding@1+rp256s1729w50"


def test_video_vector_is_unit_and_preserves_the_weighted_cosine() -> None:
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(200):
        va, ta = _unit(rng, 1280), _unit(rng, 384)
        # b shares a random share of a's direction in each modality.
        s_v, s_t = rng.uniform(0, 1, 2)
        vb = es.normalise(s_v * va + (1 - s_v) * _unit(rng, 1280))
        tb = es.normalise(s_t * ta + (1 - s_t) * _unit(rng, 384))
        a, b = es.combine(va, ta), es.combine(vb, tb)
        assert a.shape == (256,) and a.dtype == np.float32
        assert abs(float(np.linalg.norm(a)) - 1) < 1e-5
        want = es.VISUAL_WEIGHT * float(va @ vb) + es.TEXT_WEIGHT * float(ta @ tb)
        errors.append(float(a @ b) - want)
    # Johnson-Lindenstrauss at k=256: error std about (1 - cos^2) / 16.
    assert abs(float(np.mean(errors))) < 0.02
    assert float(np.std(errors)) < 0.08


def test_combine_accepts_batches_and_one_missing_modality() -> None:
    rng = np.random.default_rng(1)
    v = np.stack([_unit(rng, 1280) for _ in range(3)])
    t = np.stack([_unit(rng, 384) for _ in range(3)])
    batch = es.combine(v, t)
    assert batch.shape == (3, 256)
    np.testing.assert_allclose(batch[1], es.combine(v[1], t[1]), atol=1e-6)
    text_only = es.combine(None, t[0])
    assert text_only.shape == (256,) and abs(float(np.linalg.norm(text_only)) - 1) < 1e-5
    # A text-only query finds the video with that text ahead of another one.
    assert float(text_only @ batch[0]) > float(text_only @ batch[1]) + 0.3
    with pytest.raises(ValueError):
        es.combine(None, None)
    with pytest.raises(ValueError):
        es.combine(v[0][:100], t[0])


def test_pooling_means_then_normalises() -> None:
    rows = np.array([[3.0] + [0.0] * 1279, [1.0] + [0.0] * 1279], dtype=np.float32)
    rows[1, 1] = 2.0
    pooled = es.pool_frames(rows)
    np.testing.assert_allclose(pooled[:2], np.array([2.0, 1.0]) / np.sqrt(5), rtol=1e-6)
    with pytest.raises(ValueError):
        es.pool_frames(np.zeros((0, 1280), dtype=np.float32))


def test_vectors_of_model_outputs() -> None:
    rng = np.random.default_rng(3)
    frames = rng.uniform(0, 6, (16, 1280)).astype(np.float32)
    text = _unit(rng, 384) * 1.0001
    out = vectors_of(frames, text)
    assert out.visual.shape == (1280,) and out.text.shape == (384,) and out.video.shape == (256,)
    for v in (out.visual, out.text, out.video):
        assert v.dtype == np.float32 and abs(float(np.linalg.norm(v)) - 1) < 1e-5
    assert out.model_version == es.MODEL_VERSION


def test_frame_times_are_even_at_most_16_and_half_a_second_apart() -> None:
    assert frame_times(60.0) == [round((i + 0.5) * 3.75, 3) for i in range(16)]
    assert frame_times(3.0) == [0.25, 0.75, 1.25, 1.75, 2.25, 2.75]
    assert frame_times(0.3) == [0.15]
    assert frame_times(0.0) == [0.0]
    assert len(frame_times(8.0)) == 16 and len(frame_times(7.9)) == 15


def test_sample_command_center_crops_to_224_rgb() -> None:
    argv = sample_command(Path("in.m3u8"), [0.25, 0.75])
    graph = argv[argv.index("-vf") + 1]
    assert graph.startswith("select='gte(t,0.250)")
    assert "crop=min(iw\\,ih):min(iw\\,ih)" in graph and "scale=224:224" in graph
    assert graph.endswith("format=rgb24")
    assert argv[argv.index("-frames:v") + 1] == "2"


def test_packed_frames_round_trip_and_garbage_is_rejected() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(unpack_frames(pack_frames(frames)), frames)
    with pytest.raises(ValueError):
        unpack_frames(b"not frames")


def test_video_text() -> None:
    assert video_text(" Sunset ", "", ["dance", "#beach", ""]) == "Sunset\n#dance #beach"
