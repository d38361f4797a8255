"""recsim: the offline feed simulator, policies, metrics and learned ranker.

``../shared/RECSYS.md`` defines the evaluation; ``make eval-feed`` runs it
(``python -m recsim.evaluate``). Modules:

- ``features``: the ranker's feature contract, shared with serving (svc_rank);
- ``world``: the seeded ground truth (true watch ratio of every user on every video);
- ``logs``: days 1..T of events from a biased logging policy;
- ``dataset``: log aggregates -> feature rows (the ranker's data builder);
- ``ranker``: a numpy MLP predicting expected watch ratio (exported to ONNX by
  ``models/build_ranker.py``);
- ``policies``, ``recall``, ``guardrails``, ``metrics``, ``evaluate``: day T+1;
- ``media``: frames and titles that follow each video's topics, for the real path.

The same world also runs through the platform itself
(tests/integration/test_recsim_real_path.py): ``media`` gives its videos frames and
titles, Triton embeds them, the logs are replayed as player and engagement events,
and svc_rank's served feed is judged against the world's true watch ratio.
"""
