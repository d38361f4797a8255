"""svc_transcode: the Kafka-driven worker that turns an original into an HLS ladder.

``python -m svc_transcode`` serves TranscodeService (GetJob, ListJobs, RetryJob,
CancelJob) and runs, in the same process, the ``video.uploaded`` consumer, the
worker(s) and an outbox relay. Modules: consumer.py (event → queued job),
jobs.py (the Postgres job queue and every state transition), worker.py (claim,
lease, run, retry / dead-letter), pipeline.py (the media work), publish.py
(storage in and out, atomic publish), messages.py (events out), status.py
(reports to svc_upload), embeddings.py (Triton), runtime.py, server.py.

Environment (all optional; defaults work on one machine):

======================================  =======  =================================================
``REELS_TRANSCODE_CONCURRENCY``         1        jobs at once per process (one encode fills 2 cores)
``REELS_TRANSCODE_LEASE_S``             30       a dead worker's job is redone after this
``REELS_TRANSCODE_HEARTBEAT_S``         lease/3  lease renewal; also how a cancel is noticed
``REELS_TRANSCODE_POLL_S``              1        idle poll for due jobs
``REELS_TRANSCODE_MAX_ATTEMPTS``        3        tries before a transient failure is dead-lettered
``REELS_TRANSCODE_BACKOFF_MIN_S``       5        first retry delay; doubles per attempt (±20 %)
``REELS_TRANSCODE_BACKOFF_MAX_S``       30       cap on the retry delay
``REELS_TRANSCODE_PRESET``              veryfast x264 preset (tests: ultrafast)
``REELS_TRANSCODE_WORK_DIR``            $TMPDIR  where originals are downloaded and encoded
``REELS_EMBEDDINGS``                    on       ``off``: no text embedding (no Triton needed)
``REELS_TRANSCODE_REPORT_STATUS``       on       ``off``: run without svc_upload (job row only)
``REELS_TRANSCODE_CONSUMER``            on       ``off`` (also ``_WORKER``, ``_RELAY``): split
                                                 API-only / worker-only processes
``REELS_SERVICE_TOKEN``                 —        token for calls to svc_upload (else a dev token for
                                                 ``svc_transcode`` minted from var/keys)
======================================  =======  =================================================

The visual embedding (``VideoPublished.visual_embedding``) is left empty: the visual
model is a later issue.
"""
