"""Client libraries that log every retry are held to one line per window."""

from __future__ import annotations

import logging

from reels.jsonlog import RepeatFilter


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_a_retry_storm_becomes_one_line_per_window_with_a_count() -> None:
    f = RepeatFilter(("aiokafka",), window_s=60)
    passed = [f.filter(_record("aiokafka.conn", "Unable connect to %s")) for _ in range(500)]
    assert passed.count(True) == 1
    f._seen[("aiokafka.conn", "Unable connect to %s")] = (0.0, 499)  # the window is over
    late = _record("aiokafka.conn", "Unable connect to %s")
    assert f.filter(late) and "repeated 499 times" in str(late.msg)


def test_other_loggers_and_other_messages_pass() -> None:
    f = RepeatFilter(("aiokafka",), window_s=60)
    assert all(f.filter(_record("reels.events", "consumer down")) for _ in range(5))
    assert f.filter(_record("aiokafka", "a")) and f.filter(_record("aiokafka", "b"))
