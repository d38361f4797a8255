"""The learned ranker: a small numpy MLP predicting the expected watch ratio.

Architecture: standardise (training mean/std) -> Linear(F, 64) -> ReLU ->
Linear(64, 32) -> ReLU -> Linear(32, 1). Trained with Adam on mean squared
error against the observed watch ratio (capped at ``Y_CAP``), mini-batches in a
seeded order, early stopping on a validation day. Everything is float64 numpy
with a seeded generator, so the same data and seed give the same weights.
``models/build_ranker.py`` exports the same network to ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsim.dataset import TrainingSet

Y_CAP = 4.0


@dataclass
class Ranker:
    """Trained weights. ``mean``/``std`` ``[F]``; ``layers`` [(W ``[in, out]``, b ``[out]``)]."""

    mean: np.ndarray
    std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    history: list[float] = field(default_factory=list)  # validation MSE per epoch

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Expected watch ratio for feature rows ``x`` ``[N, F]``: float64 ``[N]``."""
        h = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> array dict (for ``np.savez`` and the ONNX export)."""
        out = {"mean": self.mean, "std": self.std}
        for i, (w, b) in enumerate(self.layers):
            out[f"w{i}"] = w
            out[f"b{i}"] = b
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Ranker:
        """Inverse of :meth:`to_arrays`."""
        n = sum(1 for k in arrays if k.startswith("w"))
        layers = [(np.asarray(arrays[f"w{i}"]), np.asarray(arrays[f"b{i}"])) for i in range(n)]
        return cls(np.asarray(arrays["mean"]), np.asarray(arrays["std"]), layers)


def _forward(layers, h):
    acts = [h]
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return acts


def train_ranker(
    train: TrainingSet,
    valid: TrainingSet | None = None,
    *,
    seed: int = 0,
    hidden: tuple[int, ...] = (64, 32),
    epochs: int = 40,
    batch: int = 256,
    lr: float = 2e-3,
    l2: float = 1e-5,
    patience: int = 5,
) -> Ranker:
    """Fit the MLP on ``train`` (x ``[N, F]``, y ``[N]``); keep the best epoch on ``valid``."""
    rng = np.random.default_rng([seed, 15485863])
    x = np.asarray(train.x, dtype=np.float64)
    y = np.minimum(np.asarray(train.y, dtype=np.float64), Y_CAP)[:, None]
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-6] = 1.0
    xs = (x - mean) / std
    sizes = [x.shape[1], *hidden, 1]
    layers = [
        (rng.normal(0.0, np.sqrt(2.0 / a), size=(a, b)), np.zeros(b))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    layers[-1][1][:] = y.mean()
    flat = [p for wb in layers for p in wb]  # w0, b0, w1, b1, ... (updated in place)
    m = [np.zeros_like(p) for p in flat]
    v = [np.zeros_like(p) for p in flat]
    b1, b2, eps = 0.9, 0.999, 1e-8
    step = 0
    ranker = Ranker(mean, std, layers)
    best = (np.inf, [(w.copy(), b.copy()) for w, b in layers])
    bad = 0
    history: list[float] = []
    for _ in range(epochs):
        order = rng.permutation(len(xs))
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            acts = _forward(layers, xs[idx])
            grad = 2.0 * (acts[-1] - y[idx]) / len(idx)
            grads: list[np.ndarray] = [np.empty(0)] * len(flat)
            for i in range(len(layers) - 1, -1, -1):
                w, _b = layers[i]
                grads[2 * i] = acts[i].T @ grad + l2 * w
                grads[2 * i + 1] = grad.sum(axis=0)
                if i > 0:
                    grad = (grad @ w.T) * (acts[i] > 0)
            step += 1
            c1, c2 = 1 - b1**step, 1 - b2**step
            for p, g, mm, vv in zip(flat, grads, m, v, strict=True):
                mm *= b1
                mm += (1 - b1) * g
                vv *= b2
                vv += (1 - b2) * g * g
                p -= lr * (mm / c1) / (np.sqrt(vv / c2) + eps)
        if valid is None:
            continue
        err = float(np.mean((ranker.predict(valid.x) - np.minimum(valid.y, Y_CAP)) ** 2))
        history.append(err)
        if err < best[0] - 1e-6:
            best = (err, [(w.copy(), b.copy()) for w, b in layers])
            bad = 0
        else:
            bad += 1
            if bad >= patience:
                break
    if valid is not None:
        layers = best[1]
    return Ranker(mean, std, layers, history)
