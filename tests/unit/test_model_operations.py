"""Model operations (issue 13), the parts without a server: the load override, the
repository-index summary, what counts as "model unavailable", the Triton command line
and the embedding version a video records."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from reels import embedding_space
from reels.model_client import is_model_unavailable
from reels_dev.infra.triton import MODEL_REPOSITORY, repository_models, server_argv
from reels_dev.models import (
    failed,
    index_states,
    override_config,
    repository_config,
    summarize,
)
from reels_dev.models import main as models_main
from svc_transcode.embeddings import vectors_of


def test_load_override_pins_a_version_or_follows_the_newest() -> None:
    base = repository_config(MODEL_REPOSITORY, "ranker")
    assert base["name"] == "ranker" and base["version_policy"] == {"latest": {"num_versions": 1}}
    pinned = override_config(base, version=1)
    assert pinned["version_policy"] == {"specific": {"versions": [1]}}
    assert pinned["input"] == base["input"] and "version_policy" in base  # base untouched
    assert override_config(pinned)["version_policy"] == {"latest": {"num_versions": 1}}
    text = repository_config(MODEL_REPOSITORY, "text_embedding")
    assert "dynamic_batching" in text
    assert "dynamic_batching" not in override_config(text, dynamic_batching=False)
    assert override_config(base, dynamic_batching=True)["dynamic_batching"] == {}


def test_every_served_model_follows_the_newest_version_directory() -> None:
    for model in ("ranker", "text_embedding", "visual_embedding"):
        cfg = repository_config(MODEL_REPOSITORY, model)
        assert cfg["version_policy"] == {"latest": {"num_versions": 1}}, model


def test_the_index_summary_shows_what_serves_and_why_a_version_failed() -> None:
    states = index_states(
        [
            {"name": "ranker", "version": "3", "state": "UNAVAILABLE", "reason": "bad onnx\nAt:"},
            {"name": "ranker", "version": "10", "state": "UNAVAILABLE", "reason": "unloaded"},
            {"name": "ranker", "version": "2", "state": "READY"},
            {"name": "text_embedding", "version": "1", "state": "READY"},
        ]
    )
    assert [s.version for s in states if s.model == "ranker"] == ["2", "3", "10"]
    assert [s.version for s in failed(states)] == ["3"]
    assert summarize(states) == ("ranker v2; ranker v3: UNAVAILABLE (bad onnx); text_embedding v1")
    assert summarize([]) == "no model loaded"


def test_only_a_not_loaded_model_counts_as_unavailable() -> None:
    switching = InferenceServerException(
        "Request for unknown model: 'ranker' version 1 is not at ready state",
        status=str(grpc.StatusCode.UNAVAILABLE),
    )
    assert is_model_unavailable(switching)
    assert is_model_unavailable(InferenceServerException("Request for unknown model: 'x'"))
    late = InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")
    assert not is_model_unavailable(late)
    bad = InferenceServerException("unexpected shape for input 'features'")
    assert not is_model_unavailable(bad)
    assert not is_model_unavailable(TimeoutError())


def test_triton_always_runs_in_explicit_mode_with_latency_quantiles(tmp_path: Path) -> None:
    (tmp_path / "ranker" / "1").mkdir(parents=True)
    (tmp_path / "ranker" / "config.pbtxt").write_text('name: "ranker"')
    (tmp_path / "unbuilt").mkdir()
    (tmp_path / "unbuilt" / "config.pbtxt").write_text('name: "unbuilt"')
    assert repository_models(tmp_path) == ["ranker"]
    argv = server_argv(1, 2, 3, model_repository=tmp_path, server_root=tmp_path)
    assert "--model-control-mode=explicit" in argv and "--load-model=ranker" in argv
    assert "--metrics-config=summary_latencies=true" in argv
    assert not [a for a in argv if "unbuilt" in a]
    quiet = server_argv(1, 2, None, model_repository=tmp_path, server_root=tmp_path, models=[])
    assert "--model-control-mode=explicit" in quiet and "--allow-metrics=false" in quiet
    assert not [a for a in quiet if a.startswith("--load-model")]


def test_a_video_records_the_model_versions_that_embedded_it() -> None:
    frames = np.ones((2, 1280), dtype=np.float32)
    text = embedding_space.normalise(np.ones(384, dtype=np.float32))
    assert vectors_of(frames, text).model_version == embedding_space.MODEL_VERSION
    out = vectors_of(frames, text, visual_version="2", text_version="1")
    assert out.model_version == "visual_embedding@2+text_embedding@1+rp256s1729w50"


def test_an_unknown_model_name_is_one_line_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ranker" / "1").mkdir(parents=True)
    (tmp_path / "ranker" / "config.pbtxt").write_text('name: "ranker"\n')
    for command in (["load", "nosuchmodel"], ["unload", "nosuchmodel"],
                    ["rollback", "nosuchmodel", "--to", "1"]):  # fmt: skip
        # No Triton at this address: the name is refused before any call.
        code = models_main(["--addr", "127.0.0.1:1", "--repository", str(tmp_path), *command])
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert "unknown model 'nosuchmodel'" in err and "known models" in err and "ranker" in err
