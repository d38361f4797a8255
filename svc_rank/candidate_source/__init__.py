"""Candidate sources: each a small named unit that recalls videos for one user.

``similar`` (Milvus ANN with the user vector), ``followees`` (recent videos of
followed creators), ``trending`` (svc_stream, global and regional), ``fresh``
(recently published, few impressions) and ``exploration`` (a random sample outside
the user's interests). Each is an object with ``name``, ``reason`` and an async
``fetch(request) -> list[Candidate]``; one that cannot reach its component raises
:class:`~svc_rank.candidate.SourceUnavailable` and the pipeline carries on without it.
"""
