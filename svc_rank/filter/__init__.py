"""Filters and heuristics between scoring and the ranked list: what may not be served
(already served, the user's own), and the mixer that orders the rest (creator
saturation, near-duplicates, the exploration and fresh shares)."""
