"""The topic registry comes from events.proto options and is the only topic naming."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from reels.v1 import events_pb2

from reels import topics

ROOT = Path(__file__).resolve().parents[2]


def test_every_payload_message_has_exactly_one_topic() -> None:
    names = [t.name for t in topics.REGISTRY.values()]
    assert len(names) == len(set(names))
    assert topics.VIDEO_UPLOADED.name == "video.uploaded"
    assert topics.VIDEO_UPLOADED.message is events_pb2.VideoUploaded
    assert topics.VIDEO_UPLOADED_DLQ.name == "video.uploaded.dlq"
    assert topics.VIDEO_UPLOADED_DLQ.message is events_pb2.VideoUploaded
    assert topics.by_name("engagement.events") is topics.ENGAGEMENT_EVENTS


def test_key_comes_from_the_declared_key_field() -> None:
    event = events_pb2.VideoPublished(video_id="v-1", creator_id="c-1")
    assert topics.VIDEO_PUBLISHED.key(event) == "v-1"
    assert topics.STREAMS_CHAT.key_field == "stream_id"


def test_parse_round_trips_and_rejects_garbage() -> None:
    event = events_pb2.VideoFailed(video_id="v-2")
    assert topics.VIDEO_FAILED.parse(event.SerializeToString()) == event
    with pytest.raises(topics.DecodeError):
        topics.VIDEO_FAILED.parse(b"\xff\xff\xff")


def test_unknown_topic_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="video.uploaded"):
        topics.by_name("video.uplodaed")


def test_no_topic_name_is_spelled_outside_the_registry() -> None:
    """Producers, consumers and tests refer to reels.topics, never to a literal name."""
    names = sorted({t.name for t in topics.REGISTRY.values()}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(f'"{n}"') + "|" + re.escape(f"'{n}'") for n in names))
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    offenders = []
    for rel in files:
        if rel.startswith("gen/") or rel in ("reels/topics.py", "tests/unit/test_topics.py"):
            continue
        path = ROOT / rel
        if not path.exists():
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{rel}:{lineno}: {line.strip()}")
    assert offenders == []
