"""Chaos test helpers (issue 14): load during a fault and the invariants after it."""
