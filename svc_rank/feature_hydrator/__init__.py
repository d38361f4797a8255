"""Feature hydration: per video (svc_stream's counters, svc_rank's catalog) and per
(user, creator) (affinity counters), turned into the 0..1 terms the scorers read."""
