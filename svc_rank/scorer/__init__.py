"""Scoring: the rule scorer (the seed formula, always available) and the learned
ranker (Triton model ``ranker``), which replaces it while it answers in time."""
