"""Developer tooling: launchers for the real components (`reels_dev.infra`), the demo,
dev JWT keys and token minting. No service imports this package; only `make`, the
Procfile, tests and benchmarks do."""
