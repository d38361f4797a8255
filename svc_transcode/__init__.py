"""svc_transcode: the Kafka-driven worker that turns an original into an HLS ladder.

``python -m svc_transcode`` serves TranscodeService (GetJob, ListJobs, RetryJob,
CancelJob) and runs, in the same process, the ``video.uploaded`` consumer, the
worker(s) and an outbox relay. Modules: consumer.py (event → queued job),
jobs.py (the Postgres job queue and every state transition), worker.py (claim,
lease, run, retry / dead-letter), pipeline.py (the media work), publish.py
(storage in and out, atomic publish), messages.py (events out), status.py
(reports to svc_upload), frames.py (frames sampled for the visual model),
embeddings.py (visual + text + video vectors from Triton), backfill.py (vectors for
videos published while Triton was unavailable), server.py (the job API), settings.py
and app.py (the composition root).

Settings (all optional; defaults work on one machine) are the typed ``Settings`` in
settings.py, read once by ``python -m svc_transcode`` and listed in the README's
settings tables; app.py assembles the service from them.

``video.published`` carries the visual (1280-d), text (384-d) and video (256-d)
vectors and ``embedding_model_version`` (reels/embedding_space.py); a video published
while Triton was unavailable gets them in a follow-up ``video.published``.
"""
