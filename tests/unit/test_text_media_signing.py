"""URIs inside the text media the origin serves (svc_stream/playback/manifest.py).

A player resolves a URI found in a playlist, a WebVTT track or a JSON index relative to
the URL it fetched that text from, which drops the query: each URI pointing into the
video's folder must carry its own signature; a fragment (``#xywh=``) stays after it.
"""

from __future__ import annotations

import json
import random

import pytest

from svc_stream.playback.manifest import (
    relative_signed,
    rewrites,
    sign_json_index,
    sign_media_playlist,
    sign_text,
    sign_uri,
    sign_webvtt,
)
from svc_transcode.artifacts import storyboard_layout, storyboard_vtt

VTT_KEY = "videos/abc/storyboard.vtt"
sign = relative_signed(lambda key: f"sig={key}")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("storyboard.jpg#xywh=0,0,160,90",
         "storyboard.jpg?sig=videos/abc/storyboard.jpg#xywh=0,0,160,90"),
        ("sprites/2.webp#xywh=1,2,3,4",
         "sprites/2.webp?sig=videos/abc/sprites/2.webp#xywh=1,2,3,4"),
        ("storyboard.jpg", "storyboard.jpg?sig=videos/abc/storyboard.jpg"),
        ("storyboard.jpg#", "storyboard.jpg?sig=videos/abc/storyboard.jpg#"),
        ("../other/storyboard.jpg#xywh=0,0,1,1", "../other/storyboard.jpg#xywh=0,0,1,1"),
        ("https://cdn.example/s.jpg#xywh=0,0,1,1", "https://cdn.example/s.jpg#xywh=0,0,1,1"),
        ("/videos/abc/s.jpg#xywh=0,0,1,1", "/videos/abc/s.jpg#xywh=0,0,1,1"),
        ("s.jpg?sig=forged#xywh=0,0,1,1", "s.jpg?sig=forged#xywh=0,0,1,1"),
    ],
)  # fmt: skip
def test_a_uri_keeps_its_fragment_after_the_signed_query(uri: str, expected: str) -> None:
    assert sign_uri(VTT_KEY, uri, sign) == expected


@pytest.mark.parametrize("seed", range(5))
def test_every_cue_of_a_generated_storyboard_track_is_signed(seed: int) -> None:
    rng = random.Random(seed)
    duration = rng.uniform(1.0, 900.0)
    layout = storyboard_layout(duration, rng.choice([720, 1080, 1920]), rng.choice([1280, 1920]))
    vtt = storyboard_vtt(layout, "storyboard.jpg", duration)
    out = sign_webvtt(vtt, VTT_KEY, sign)
    cues = [line for line in out.splitlines() if "#xywh=" in line]
    assert len(cues) == layout.count
    assert all(c.startswith("storyboard.jpg?sig=videos/abc/storyboard.jpg#xywh=") for c in cues)
    # Only the cue payloads changed.
    assert out.replace("?sig=videos/abc/storyboard.jpg", "") == vtt


def test_crlf_tracks_keep_their_line_endings_and_cue_settings_lines() -> None:
    vtt = (
        "\ufeffWEBVTT - thumbnails\r\n\r\n"
        "1\r\n00:00.000 --> 00:05.000 align:start\r\nthumbs/a.png#xywh=0,0,10,10\r\n\r\n"
        "2\r\n00:05.000 --> 00:10.000\r\n  thumbs/a.png#xywh=10,0,10,10\r\n"
    )
    out = sign_webvtt(vtt, VTT_KEY, sign)
    assert out == (
        "\ufeffWEBVTT - thumbnails\r\n\r\n"
        "1\r\n00:00.000 --> 00:05.000 align:start\r\n"
        "thumbs/a.png?sig=videos/abc/thumbs/a.png#xywh=0,0,10,10\r\n\r\n"
        "2\r\n00:05.000 --> 00:10.000\r\n"
        "  thumbs/a.png?sig=videos/abc/thumbs/a.png#xywh=10,0,10,10\r\n"
    )


def test_subtitle_and_chapter_text_is_never_taken_for_a_uri() -> None:
    vtt = (
        "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000\n\n"
        "NOTE storyboard.jpg is mentioned here\n\n"
        "STYLE\n::cue { color: red }\n\n"
        "00:00.000 --> 00:02.000\nsee storyboard.jpg\n<v Bob>hello.jpg and more</v>\n\n"
        "chapter-1\n00:02.000 --> 00:04.000\nChapter one\nintro.mp4 is a word here too.\n"
    )
    assert sign_webvtt(vtt, VTT_KEY, sign) == vtt


def test_the_storyboard_json_index_names_a_signed_image() -> None:
    index = {"image": "storyboard.jpg", "interval_s": 2.0, "tiles": [{"x": 0, "y": 0}]}
    out = json.loads(sign_json_index(json.dumps(index), "videos/abc/storyboard.json", sign))
    assert out == {**index, "image": "storyboard.jpg?sig=videos/abc/storyboard.jpg"}
    for text in ("[1, 2]", "not json", json.dumps({"image": "../x/y.jpg"}), "{}"):
        assert sign_json_index(text, "videos/abc/storyboard.json", sign) == text


def test_playlist_uris_with_fragments_are_signed_before_the_fragment() -> None:
    text = '#EXTM3U\n#EXT-X-MAP:URI="init.mp4#t=0"\n#EXTINF:2,\nseg_0.m4s\n#EXT-X-ENDLIST'
    out = sign_media_playlist(text, "videos/abc/720p/index.m3u8", sign)
    assert '#EXT-X-MAP:URI="init.mp4?sig=videos/abc/720p/init.mp4#t=0"' in out


def test_the_origin_rewrites_exactly_the_text_media_that_name_objects() -> None:
    for key in ("a/b.m3u8", "a/storyboard.vtt", "a/subs/en_1.VTT", "a/storyboard.json"):
        assert rewrites(key)
    for key in ("a/seg.ts", "a/init.mp4", "a/storyboard.jpg", "a/x.m4s", "a/vtt"):
        assert not rewrites(key)
    assert sign_text("anything", "a/b.bin", sign) == "anything"
