"""deploy/prometheus/alerts.yml: the seed's alerts, on metrics the services really export.

The exported names come from reels/metrics.py (EXPORTED), translated to Prometheus names
the way opentelemetry-exporter-prometheus does; tests/integration/test_metrics_scrape.py
checks that a scrape of a running service shows exactly those names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reels.metrics import EXPORTED, exported_series, prometheus_name

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"

# PromQL words that are not metric names (functions, aggregations, keywords).
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "histogram_quantile", "abs", "clamp_min", "clamp_max", "clamp", "vector", "scalar",
    "absent", "absent_over_time", "avg_over_time", "max_over_time", "min_over_time",
    "sum_over_time", "count_over_time", "quantile_over_time", "time", "label_replace",
    "inf", "nan",
}  # fmt: skip


def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small, sufficient lexer)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", "", text)  # offset modifiers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", "", text)  # numbers
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def test_the_lexer_finds_metric_names_only() -> None:
    expr = (
        'sum by (le) (rate(a_bucket{x="b c"}[5m])) / on (job) '
        "histogram_quantile(0.5, b_total offset 5m) > 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_every_seed_alert_is_there() -> None:
    alerts = {r["alert"]: str(r["expr"]) for r in _rules() if "alert" in r}
    assert set(alerts) == {
        "TranscodeQueueDepthHigh",
        "TranscodeJobFailureRateHigh",
        "WatchCompletionP50Low",
        "Playback360pShareHigh",
        "DeepModelInferenceP95High",
    }
    squash = {name: " ".join(expr.split()) for name, expr in alerts.items()}
    assert "video_transcode_queue_depth" in squash["TranscodeQueueDepthHigh"]
    assert squash["TranscodeQueueDepthHigh"].endswith("> 10000")
    assert squash["TranscodeJobFailureRateHigh"].endswith("> 0.01")
    assert "histogram_quantile(0.50" in squash["WatchCompletionP50Low"]
    assert squash["WatchCompletionP50Low"].endswith("< 0.60")
    assert 'rendition="360p"' in squash["Playback360pShareHigh"]
    assert squash["Playback360pShareHigh"].endswith("> 0.30")
    assert "histogram_quantile(0.95" in squash["DeepModelInferenceP95High"]
    assert (
        "deep_model_inference_duration_ms_milliseconds_bucket"
        in squash["DeepModelInferenceP95High"]
    )
    assert "by (le, model, version)" in squash["DeepModelInferenceP95High"]
    assert squash["DeepModelInferenceP95High"].endswith("> 500")


def test_every_expression_names_only_metrics_the_services_export() -> None:
    exported = exported_series()
    recorded = {str(r["record"]) for r in _rules() if "record" in r}
    for rule in _rules():
        names = metric_names(str(rule["expr"]))
        assert names, rule
        unknown = names - exported - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)}"


def test_prometheus_names_follow_the_exporter_translation() -> None:
    names = {m.name: m.prometheus for m in EXPORTED}
    assert names["video.upload_duration_seconds"] == "video_upload_duration_seconds"
    assert names["video.transcoding_duration_seconds"] == "video_transcoding_duration_seconds"
    assert names["watch.completion_rate_distribution"] == "watch_completion_rate_distribution"
    assert names["video.transcode_jobs"] == "video_transcode_jobs"
    assert prometheus_name("rpc.server.duration", "ms", "histogram") == (
        "rpc_server_duration_milliseconds"
    )
    assert prometheus_name("a.b_total", "{x}", "counter") == "a_b"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_each_alert_fires_only_past_its_threshold() -> None:
    for argv in (
        ["promtool", "check", "rules", RULES.name],
        ["promtool", "test", "rules", "alerts_test.yml"],  # synthetic series per alert
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=RULES.parent)
        assert result.returncode == 0, result.stdout + result.stderr
