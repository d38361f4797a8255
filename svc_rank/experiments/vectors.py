"""The committed assignment test vectors: ``testdata/assignment_vectors.json``.

Any client that implements the bucket function (a web or mobile client, an analysis
notebook, another service) checks itself against this file: for every vector,
``bucket(salt, unit)`` must equal ``bucket``, and the experiment's arm ranges (arms in
order, consecutive, ``share_bp`` wide) must give ``arm`` (null: not enrolled).

``python -m svc_rank.experiments.vectors`` regenerates the file; the unit test
recomputes every vector from the file, so the file and the code cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from svc_rank.experiments.assignment import arm_for_bucket, bucket
from svc_rank.experiments.model import Arm, Experiment, RankingConfig

VECTORS_PATH = Path(__file__).parent / "testdata" / "assignment_vectors.json"

VECTOR_EXPERIMENTS = (
    Experiment.start(
        "exp-ranker-v2",
        [
            Arm("control", 5000),
            Arm("treatment", 5000, RankingConfig.of(ranker_model_version="2")),
        ],
    ),
    Experiment(
        "exp-weights",
        3,
        "exp-weights/p3",
        (
            Arm("control", 3334),
            Arm("more_affinity", 3333, RankingConfig.of({"completion": 0.3, "affinity": 0.3})),
            Arm("explore_20", 3333, RankingConfig.of(exploration_share=0.2)),
        ),
    ),
    Experiment.start(
        "exp-partial",
        [Arm("control", 500), Arm("treatment", 1500)],
        salt="a salt with spaces, ünïcode and a : colon",
    ),
)

VECTOR_UNITS = (
    "u1",
    "alice",
    "0b9a6f2e-3c1d-4e5f-8a7b-6c5d4e3f2a1b",
    "ユーザー",
    "emoji-🎬",
    ":",
    " spaced ",
    *(f"user-{i:06d}" for i in range(1, 26)),
)


def make_vectors() -> dict[str, Any]:
    """The test-vector document (deterministic: same code, same document)."""
    experiments = []
    for exp in VECTOR_EXPERIMENTS:
        vectors = []
        for unit in VECTOR_UNITS:
            b = bucket(exp.salt, unit)
            arm = arm_for_bucket(exp, b)
            vectors.append(
                {"salt": exp.salt, "unit": unit, "bucket": b, "arm": arm.name if arm else None}
            )
        experiments.append(
            {
                "experiment_id": exp.experiment_id,
                "phase": exp.phase,
                "salt": exp.salt,
                "arms": [{"name": a.name, "share_bp": a.share_bp} for a in exp.arms],
                "vectors": vectors,
            }
        )
    return {
        "bucket": 'int.from_bytes(sha256((salt + ":" + unit).encode("utf-8"))[:8], "big") % 10000',
        "arm": "arms in order take consecutive bucket ranges share_bp wide; "
        "bucket >= sum(share_bp) -> null (not enrolled)",
        "experiments": experiments,
    }


def render(doc: dict[str, Any]) -> str:
    """JSON with one vector per line (readable diffs)."""
    lines = ["{"]
    lines.append(f' "bucket": {json.dumps(doc["bucket"])},')
    lines.append(f' "arm": {json.dumps(doc["arm"])},')
    lines.append(' "experiments": [')
    for i, exp in enumerate(doc["experiments"]):
        head = {k: v for k, v in exp.items() if k != "vectors"}
        lines.append("  {")
        for k, v in head.items():
            lines.append(f"   {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
        lines.append('   "vectors": [')
        vecs = exp["vectors"]
        for j, v in enumerate(vecs):
            comma = "," if j < len(vecs) - 1 else ""
            lines.append(f"    {json.dumps(v, ensure_ascii=False)}{comma}")
        lines.append("   ]")
        lines.append("  }" + ("," if i < len(doc["experiments"]) - 1 else ""))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_vectors(path: Path = VECTORS_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(make_vectors()), encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    print(f"wrote {write_vectors(Path(sys.argv[1]) if len(sys.argv) > 1 else VECTORS_PATH)}")
