"""svc_rank: the feed (recall, scoring, dedup, saturation, cursor) and trending pages."""
