"""svc_rank's index side: what its consumers keep from the event streams.

* ``catalog`` — ``video.published`` → ``rank_videos`` (Postgres) and, through the
  indexer, the video vectors in Milvus (:mod:`svc_rank.index.vectors`).
* ``engagement`` — ``engagement.events`` → the followee graph (Postgres) and the
  user × creator affinity counters (Redis).
* ``watches`` — ``video.events`` → user vectors, affinity, the user's hashtags and
  region, and the watched videos' place in the served history (Redis).
"""
