"""Side effects of serving a page: the served history and per-video impressions."""
