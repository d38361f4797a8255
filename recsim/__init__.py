"""recsim: the offline feed simulator, policies, metrics and learned ranker.

``../shared/RECSYS.md`` defines the evaluation; ``make eval-feed`` runs it
(``python -m recsim.evaluate``). Modules:

- ``features``: the ranker's feature contract, shared with serving (svc_rank);
- ``world``: the seeded ground truth (true watch ratio of every user on every video);
- ``logs``: days 1..T of events from a biased logging policy;
- ``dataset``: log aggregates -> feature rows (the ranker's data builder);
- ``ranker``: a numpy MLP predicting expected watch ratio (exported to ONNX by
  ``models/build_ranker.py``);
- ``policies``, ``recall``, ``guardrails``, ``metrics``, ``evaluate``: day T+1.
"""
