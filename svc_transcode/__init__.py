"""svc_transcode: the Kafka-driven worker that turns an original into an HLS ladder.

``python -m svc_transcode`` serves TranscodeService (GetJob, ListJobs, RetryJob,
CancelJob) and runs, in the same process, the ``video.uploaded`` consumer, the
worker(s) and an outbox relay. Modules: consumer.py (event → queued job),
jobs.py (the Postgres job queue and every state transition), worker.py (claim,
lease, run, retry / dead-letter), pipeline.py (the media work), publish.py
(storage in and out, atomic publish), messages.py (events out), status.py
(reports to svc_upload), embeddings.py (Triton), server.py (the job API),
settings.py and app.py (the composition root).

Settings (all optional; defaults work on one machine) are the typed ``Settings`` in
settings.py, read once by ``python -m svc_transcode`` and listed in the README's
settings tables; app.py assembles the service from them.

The visual embedding (``VideoPublished.visual_embedding``) is left empty: the visual
model is a later issue.
"""
