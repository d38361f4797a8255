"""Assignment: the one bucket function every client must compute identically.

    bucket(salt, unit) = int.from_bytes(SHA-256(UTF-8(salt + ":" + unit))[:8], "big") % 10000

* ``H`` is SHA-256 over the UTF-8 bytes of ``salt + ":" + unit`` (no normalisation:
  the unit id is used exactly as the platform stores it). The first 8 bytes of the
  digest, read as an unsigned big-endian integer, are taken modulo 10000. SHA-256 is
  available everywhere (browsers' SubtleCrypto, every language's standard library),
  is well mixed in every byte, and does not depend on a seed or a platform's
  ``hash()``. The modulo bias of 2**64 mod 10000 is below 1e-15 per bucket.
* Arms take consecutive bucket ranges in their declared order: the first arm gets
  ``[0, share_0)``, the next ``[share_0, share_0 + share_1)``, and so on; buckets at
  or past the sum of the shares are not enrolled (``assign`` returns ``None``).
* ``unit`` is the user id (for signed-out traffic, whatever stable device id the
  caller uses); it must not be empty.

Test vectors: ``testdata/assignment_vectors.json`` (salt, unit, bucket, and the arm
for the experiments it declares). ``python -m svc_rank.experiments.vectors``
regenerates that file; ``tests/unit/test_experiments_assignment.py`` recomputes every
vector, so a change to this function fails the tests before any client disagrees.
"""

from __future__ import annotations

import hashlib

from svc_rank.experiments.model import BUCKETS, Arm, Experiment


def bucket(salt: str, unit: str) -> int:
    """``H(salt + ":" + unit) mod 10000`` (see the module docstring for ``H``)."""
    if not unit:
        raise ValueError("unit (user id) must not be empty")
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm_for_bucket(experiment: Experiment, b: int) -> Arm | None:
    """The arm whose bucket range holds ``b``, or None when ``b`` is not enrolled."""
    if not 0 <= b < BUCKETS:
        raise ValueError(f"bucket {b} out of range 0..{BUCKETS - 1}")
    upper = 0
    for arm in experiment.arms:
        upper += arm.share_bp
        if b < upper:
            return arm
    return None


def assign(experiment: Experiment, unit: str) -> Arm | None:
    """The arm ``unit`` gets in this phase of ``experiment``; None when not enrolled."""
    return arm_for_bucket(experiment, bucket(experiment.salt, unit))
