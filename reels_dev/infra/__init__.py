"""Launchers for the real components (broker, Triton, Envoy, PostgreSQL, Redis).

Used by `make up` (through the Procfile) and by the test fixtures, which start
each component on free loopback ports and stop it afterwards.
"""
