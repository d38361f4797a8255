"""The platform's key metrics, defined once: OpenTelemetry instruments with units.

Services record them where the thing happens (one call each); ``reels.telemetry``
exports them to the OTLP collector and, on ``REELS_METRICS_PORT``, as a Prometheus
``/metrics`` endpoint (``opentelemetry-exporter-prometheus``).

Prometheus names (what ``deploy/prometheus/alerts.yml`` queries) are the OpenTelemetry
names translated by the exporter: dots become underscores, the unit is appended unless
the name already ends with it (``s`` → ``_seconds``; annotations such as ``{job}`` and
the unit ``1`` add nothing), counters get ``_total`` and histograms are the series
``_bucket`` / ``_sum`` / ``_count``. :data:`EXPORTED` lists every metric with its
Prometheus name; :func:`prometheus_name` is the translation.

Instrument (unit) → Prometheus family, and who records it:

* ``video.upload_duration_seconds`` (s) → histogram ``video_upload_duration_seconds``;
  svc_upload, from creating an upload to completing it.
* ``video.transcoding_duration_seconds`` (s) → histogram
  ``video_transcoding_duration_seconds``; svc_transcode, one job attempt, by ``outcome``.
* ``video.transcode_queue_depth`` ({job}) → gauge ``video_transcode_queue_depth``;
  svc_transcode, jobs waiting (state ``queued``).
* ``video.transcode_jobs`` ({job}) → counter ``video_transcode_jobs_total``;
  svc_transcode, attempts finished, by ``outcome``.
* ``watch.completion_rate_distribution`` (1) → histogram
  ``watch_completion_rate_distribution``; svc_stream, playhead ÷ duration per watch event.
* ``playback.rendition_starts`` ({start}) → counter ``playback_rendition_starts_total``;
  svc_stream, ``watch_start`` events by ``rendition``.
* ``rpc.server.duration`` (ms) → histogram ``rpc_server_duration_milliseconds``; every
  service, one RPC by method and code.
* ``feed.ranking_latency_ms`` (ms) → histogram ``feed_ranking_latency_ms_milliseconds``;
  svc_rank, one GetFeed inside the service, by ``cache_hit``.
* ``deep_model.inference_duration_ms`` (ms) → histogram
  ``deep_model_inference_duration_ms_milliseconds``; one call of a Triton-served model
  (svc_rank: ``ranker``; svc_transcode: ``text_embedding``, ``visual_embedding``), by
  ``model``, ``version`` (the version Triton answered with; "unknown" when none did)
  and ``outcome`` (ok, timeout, error). Triton's own per-model quantiles are
  ``nv_inference_request_summary_us`` on its metrics port (reels_dev/infra/triton.py).
* ``feed.fallbacks`` ({response}) → counter ``feed_fallbacks_total``; svc_rank, feed
  responses served by a degraded path, by ``fallback`` (rule_scorer, no_vectors,
  last_list, redis_trending, uncached).

Definitions:

* ``video.transcode_jobs{outcome}``: ``succeeded``, ``failed`` (permanent: the input is
  unusable), ``dead_lettered`` (transient, attempts exhausted), ``retried`` (transient,
  scheduled again), ``cancelled``. The job failure rate is
  (failed + dead_lettered) ÷ (succeeded + failed + dead_lettered).
* ``watch.completion_rate_distribution``: for every accepted watch event after the start
  (``progress_25/50/75``, ``watch_complete``) the playhead ÷ the video's duration, capped
  at 1 (``watch_complete`` is 1). Buckets every 10 %, so P50 is derivable
  (``histogram_quantile``).
* ``playback.rendition_starts{rendition}``: one per accepted ``watch_start`` event, by the
  rendition the player started on (``NNNp``; anything else is ``other``). The share of
  360p playback is ``rendition="360p"`` ÷ all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram

_meter = metrics.get_meter("reels")

# Names (OpenTelemetry), used below and by the alert rules test.
UPLOAD_DURATION = "video.upload_duration_seconds"
TRANSCODING_DURATION = "video.transcoding_duration_seconds"
TRANSCODE_QUEUE_DEPTH = "video.transcode_queue_depth"
TRANSCODE_JOBS = "video.transcode_jobs"
COMPLETION_RATE = "watch.completion_rate_distribution"
RENDITION_STARTS = "playback.rendition_starts"
RPC_SERVER_DURATION = "rpc.server.duration"
FEED_RANKING_LATENCY = "feed.ranking_latency_ms"
DEEP_MODEL_INFERENCE = "deep_model.inference_duration_ms"
FEED_FALLBACKS = "feed.fallbacks"

# Outcomes of a transcode attempt (attribute ``outcome``).
SUCCEEDED, FAILED, DEAD_LETTERED, RETRIED, CANCELLED = (
    "succeeded",
    "failed",
    "dead_lettered",
    "retried",
    "cancelled",
)

_DURATION_BUCKETS_S = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200]
_RATIO_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]

upload_duration: Histogram = _meter.create_histogram(
    UPLOAD_DURATION,
    unit="s",
    description="Time from creating an upload to completing it (all bytes received, checked)",
    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS_S,
)
transcoding_duration: Histogram = _meter.create_histogram(
    TRANSCODING_DURATION,
    unit="s",
    description="Time one transcode job attempt took, by outcome",
    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS_S,
)
transcode_queue_depth = _meter.create_gauge(
    TRANSCODE_QUEUE_DEPTH,
    unit="{job}",
    description="Transcode jobs waiting to be processed (state queued, incl. retry backoff)",
)
transcode_jobs: Counter = _meter.create_counter(
    TRANSCODE_JOBS,
    unit="{job}",
    description="Transcode job attempts finished, by outcome",
)
completion_rate: Histogram = _meter.create_histogram(
    COMPLETION_RATE,
    unit="1",
    description="Playhead / duration of each watch event after the start (1 = completed)",
    explicit_bucket_boundaries_advisory=_RATIO_BUCKETS,
)
rendition_starts: Counter = _meter.create_counter(
    RENDITION_STARTS,
    unit="{start}",
    description="Playback starts (watch_start events), by rendition",
)
rpc_server_duration: Histogram = _meter.create_histogram(
    RPC_SERVER_DURATION, unit="ms", description="Time to serve one RPC, by method and code"
)
_LATENCY_BUCKETS_MS = [1, 2, 5, 10, 20, 30, 50, 75, 100, 200, 500, 1000]
feed_ranking_latency: Histogram = _meter.create_histogram(
    FEED_RANKING_LATENCY,
    unit="ms",
    description="Time svc_rank spent on one GetFeed, by cache_hit",
    explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS_MS,
)
deep_model_inference_duration: Histogram = _meter.create_histogram(
    DEEP_MODEL_INFERENCE,
    unit="ms",
    description="Time of one call of a Triton-served model, by model, version and outcome",
    explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS_MS,
)
feed_fallbacks: Counter = _meter.create_counter(
    FEED_FALLBACKS,
    unit="{response}",
    description="Feed responses served by a degraded path, by fallback",
)


# --------------------------------------------------------------------------- recorders

_RENDITION = re.compile(r"[0-9]{3,4}p")
# reels.v1.EventType numbers (common.proto); kept here so this module needs no stubs.
_WATCH_START, _PROGRESS_25, _PROGRESS_50, _PROGRESS_75, _WATCH_COMPLETE = 1, 2, 3, 4, 5


def record_transcode_attempt(outcome: str, seconds: float) -> None:
    """One transcode attempt ended with ``outcome`` after ``seconds``."""
    transcode_jobs.add(1, {"outcome": outcome})
    transcoding_duration.record(max(0.0, seconds), {"outcome": outcome})


def record_player_event(
    event_type: int, position_s: float, duration_s: float, rendition: str
) -> None:
    """An accepted player event (svc_stream RecordEvents): rendition starts, completion."""
    if event_type == _WATCH_START:
        name = rendition.strip().lower()
        rendition_starts.add(1, {"rendition": name if _RENDITION.fullmatch(name) else "other"})
    elif event_type == _WATCH_COMPLETE:
        completion_rate.record(1.0)
    elif event_type in (_PROGRESS_25, _PROGRESS_50, _PROGRESS_75) and duration_s > 0:
        completion_rate.record(min(1.0, max(0.0, position_s / duration_s)))


# --------------------------------------------------------------------------- Prometheus names


@dataclass(frozen=True)
class Exported:
    """A metric as the services export it."""

    name: str  # OpenTelemetry instrument name
    kind: str  # "histogram" | "counter" | "gauge"
    unit: str
    service: str  # who records it ("*": every service)

    @property
    def prometheus(self) -> str:
        """The Prometheus family name (what a scrape's text format calls it)."""
        return prometheus_name(self.name, self.unit, self.kind)

    @property
    def series(self) -> tuple[str, ...]:
        """The sample names a PromQL expression can use."""
        base = self.prometheus
        if self.kind == "histogram":
            return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
        if self.kind == "counter":
            return (f"{base}_total",)
        return (base,)


EXPORTED: tuple[Exported, ...] = (
    Exported(UPLOAD_DURATION, "histogram", "s", "svc_upload"),
    Exported(TRANSCODING_DURATION, "histogram", "s", "svc_transcode"),
    Exported(TRANSCODE_QUEUE_DEPTH, "gauge", "{job}", "svc_transcode"),
    Exported(TRANSCODE_JOBS, "counter", "{job}", "svc_transcode"),
    Exported(COMPLETION_RATE, "histogram", "1", "svc_stream"),
    Exported(RENDITION_STARTS, "counter", "{start}", "svc_stream"),
    Exported(RPC_SERVER_DURATION, "histogram", "ms", "*"),
    Exported(FEED_RANKING_LATENCY, "histogram", "ms", "svc_rank"),
    Exported(DEEP_MODEL_INFERENCE, "histogram", "ms", "svc_rank, svc_transcode"),
    Exported(FEED_FALLBACKS, "counter", "{response}", "svc_rank"),
)


def prometheus_name(name: str, unit: str, kind: str) -> str:
    """The family name opentelemetry-exporter-prometheus gives instrument ``name``.

    Counters are the family name without ``_total`` (their sample adds it), as in the
    Prometheus text format's ``# TYPE`` line.
    """
    from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_full_name

    family = sanitize_full_name(name)
    suffix = map_unit(unit)
    if suffix and not family.endswith(f"_{suffix}"):
        family = f"{family}_{suffix}"
    if kind == "counter" and family.endswith("_total"):
        family = family[: -len("_total")]
    return family


def exported_series() -> set[str]:
    """Every sample name the services export (for checking alert expressions)."""
    return {s for m in EXPORTED for s in m.series}
