"""Shared fixtures: each starts a real component on free loopback ports."""

pytest_plugins = ["tests.fixtures.mesh", "tests.fixtures.infra"]
