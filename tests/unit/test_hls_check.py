"""The RFC 8216 playlist checker (tests/hls_check.py) on hand-written playlists.

A checker that cannot fail proves nothing, so every rule it enforces has a playlist that
breaks it here, next to a valid one that passes. The playlists svc_transcode writes and
svc_stream serves (re-ordered and signed) must pass too.
"""

from __future__ import annotations

import random

import pytest

from svc_stream.playback.devices import DeviceClass
from svc_stream.playback.manifest import relative_signed, render_master, sign_media_playlist
from svc_transcode.hls import VariantStats, master_playlist, peak_segment_bit_rate
from svc_transcode.ladder import build_ladder
from tests.hls_check import (
    assert_playlist_valid,
    master_problems,
    media_problems,
    parse_attributes,
    peak_bit_rate,
    required_version,
)

MASTER = (
    "#EXTM3U\n"
    "#EXT-X-VERSION:3\n"
    "#EXT-X-INDEPENDENT-SEGMENTS\n"
    "#EXT-X-STREAM-INF:BANDWIDTH=2000000,AVERAGE-BANDWIDTH=1500000,RESOLUTION=1280x720,"
    'CODECS="avc1.64001f,mp4a.40.2",FRAME-RATE=30.000\n'
    "720p/index.m3u8\n"
    "#EXT-X-STREAM-INF:BANDWIDTH=700000,AVERAGE-BANDWIDTH=500000,RESOLUTION=640x360,"
    'CODECS="avc1.64001e,mp4a.40.2",FRAME-RATE=30.000\n'
    "360p/index.m3u8\n"
)

MEDIA = (
    "#EXTM3U\n"
    "#EXT-X-VERSION:3\n"
    "#EXT-X-TARGETDURATION:2\n"
    "#EXT-X-MEDIA-SEQUENCE:0\n"
    "#EXT-X-PLAYLIST-TYPE:VOD\n"
    "#EXT-X-INDEPENDENT-SEGMENTS\n"
    "#EXTINF:2.000000,\n"
    "seg_0000.ts\n"
    "#EXTINF:2.000000,\n"
    "seg_0001.ts\n"
    "#EXTINF:0.600000,\n"
    "seg_0002.ts\n"
    "#EXT-X-ENDLIST\n"
)


def test_valid_master_and_media_playlists_pass() -> None:
    assert master_problems(MASTER) == []
    assert media_problems(MEDIA) == []
    assert_playlist_valid(MASTER)
    assert_playlist_valid(MEDIA)


def test_crlf_line_endings_are_allowed() -> None:
    assert master_problems(MASTER.replace("\n", "\r\n")) == []
    assert media_problems(MEDIA.replace("\n", "\r\n")) == []


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        (MASTER.replace("BANDWIDTH=700000,AVERAGE-", "AVERAGE-"), "no BANDWIDTH"),
        (MASTER.replace("BANDWIDTH=700000", "BANDWIDTH=7e5"), "not a decimal-integer"),
        (MASTER.replace("AVERAGE-BANDWIDTH=500000", "AVERAGE-BANDWIDTH=900000"), "exceeds"),
        (MASTER.replace(',CODECS="avc1.64001e,mp4a.40.2"', ""), "no CODECS"),
        (MASTER.replace('CODECS="avc1.64001e,mp4a.40.2"', 'CODECS=""'), "non-empty quoted"),
        (MASTER.replace('CODECS="avc1.64001e,mp4a.40.2"', "CODECS=avc1"), "quoted"),
        (MASTER.replace("RESOLUTION=640x360", "RESOLUTION=640"), "decimal-resolution"),
        (MASTER.replace("FRAME-RATE=30.000\n360p", "FRAME-RATE=fast\n360p"), "FRAME-RATE"),
        (MASTER.replace("360p/index.m3u8\n", ""), "has no URI line"),
        (MASTER.replace("720p/index.m3u8\n", ""), "has no URI line"),
        (MASTER + "extra/index.m3u8\n", "not preceded by EXT-X-STREAM-INF"),
        (MASTER + "#EXTINF:2.0,\n", "media playlist tag"),
        (MASTER + "#EXT-X-TARGETDURATION:2\n", "media playlist tag"),
        (MASTER.replace("#EXTM3U\n", ""), "first line is not #EXTM3U"),
        ("\ufeff" + MASTER, "byte order mark"),
        (MASTER.replace("#EXT-X-VERSION:3\n", "#EXT-X-VERSION:3\n#EXT-X-VERSION:3\n"), "times"),
        (MASTER.replace("BANDWIDTH=700000,", "BANDWIDTH=700000,,"), "does not parse"),
        (MASTER.replace("BANDWIDTH=700000,", "BANDWIDTH=700000,BANDWIDTH=1,"), "does not parse"),
        (MASTER.replace("720p/index.m3u8", "720p/index.m3u8\x07"), "control characters"),
        ("#EXTM3U\n#EXT-X-VERSION:3\n", "no EXT-X-STREAM-INF"),
    ],
)
def test_each_master_rule_can_fail(broken: str, complaint: str) -> None:
    problems = master_problems(broken)
    assert any(complaint in p for p in problems), problems
    with pytest.raises(AssertionError):
        assert_playlist_valid(broken)


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        # 2.6 s rounds to 3, above the target of 2 (2.4 would round to 2 and pass).
        (MEDIA.replace("#EXTINF:0.600000,", "#EXTINF:2.600000,"), "rounds above"),
        (MEDIA.replace("#EXT-X-TARGETDURATION:2\n", ""), "no EXT-X-TARGETDURATION"),
        (MEDIA.replace("TARGETDURATION:2", "TARGETDURATION:2.5"), "not a decimal-integer"),
        (MEDIA.replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:2"), "floating-point EXTINF"),
        (MEDIA.replace("#EXT-X-VERSION:3\n", ""), "need version 3"),
        (MEDIA.replace("seg_0001.ts\n", "#EXT-X-BYTERANGE:1000@0\nseg_0001.ts\n"), "version 4"),
        (MEDIA.replace("#EXT-X-INDEPENDENT-SEGMENTS\n", '#EXT-X-MAP:URI="init.mp4"\n'), "6"),
        (
            MEDIA.replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:4").replace(
                "#EXT-X-INDEPENDENT-SEGMENTS\n",
                '#EXT-X-I-FRAMES-ONLY\n#EXT-X-MAP:URI="init.mp4"\n',
            ),
            "need version 5",
        ),
        (
            MEDIA.replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:4").replace(
                "#EXT-X-INDEPENDENT-SEGMENTS\n",
                '#EXT-X-KEY:METHOD=AES-128,URI="k",KEYFORMAT="identity"\n',
            ),
            "KEYFORMAT",
        ),
        (
            MEDIA.replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:7").replace(
                "#EXT-X-INDEPENDENT-SEGMENTS\n", "#EXT-X-ALLOW-CACHE:YES\n"
            ),
            "removed in version 7",
        ),
        (MEDIA.replace("#EXT-X-ENDLIST\n", ""), "no EXT-X-ENDLIST"),
        (MEDIA.replace("#EXT-X-PLAYLIST-TYPE:VOD\n", ""), "not VOD"),
        (MEDIA.replace("PLAYLIST-TYPE:VOD", "PLAYLIST-TYPE:EVENT"), "not VOD"),
        (MEDIA.replace("PLAYLIST-TYPE:VOD", "PLAYLIST-TYPE:LIVE"), "is not VOD or EVENT"),
        (
            MEDIA.replace("#EXT-X-MEDIA-SEQUENCE:0\n", "").replace(
                "seg_0000.ts\n", "seg_0000.ts\n#EXT-X-MEDIA-SEQUENCE:0\n"
            ),
            "before the first media segment",
        ),
        (MEDIA.replace("MEDIA-SEQUENCE:0", "MEDIA-SEQUENCE:-1"), "not a decimal-integer"),
        (MEDIA.replace("#EXTINF:2.000000,\nseg_0001.ts", "seg_0001.ts"), "has no EXTINF"),
        (MEDIA.replace("seg_0001.ts\n", ""), "EXTINF follows an EXTINF"),
        (MEDIA.replace("#EXTINF:0.600000,", "#EXTINF:-0.6,"), "non-negative"),
        (MEDIA.replace("#EXTINF:0.600000,", "#EXTINF:0.6"), "no comma"),
        (MEDIA + "#EXTINF:1.0,\nlate.ts\n", "after EXT-X-ENDLIST"),
        (MEDIA.replace("#EXT-X-ENDLIST\n", "#EXTINF:1.0,\n#EXT-X-ENDLIST\n"), "no segment URI"),
        (MEDIA + "#EXT-X-ENDLIST\n", "appears 2 times"),
        (MEDIA.replace("#EXT-X-VERSION:3\n", "#EXT-X-VERSION:3\n#EXT-X-VERSION:6\n"), "times"),
        (
            MEDIA.replace("#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-STREAM-INF:BANDWIDTH=1"),
            "master playlist tag",
        ),
        (MEDIA.replace("#EXTM3U\n", ""), "first line is not #EXTM3U"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-ENDLIST\n", "no "),
    ],
)
def test_each_media_rule_can_fail(broken: str, complaint: str) -> None:
    problems = media_problems(broken)
    assert any(complaint in p for p in problems), problems
    with pytest.raises(AssertionError):
        assert_playlist_valid(broken)


def test_rounding_to_the_target_duration_is_to_the_nearest_integer() -> None:
    assert media_problems(MEDIA.replace("#EXTINF:0.600000,", "#EXTINF:2.499,")) == []
    assert media_problems(MEDIA.replace("#EXTINF:0.600000,", "#EXTINF:2.5,")) != []


def test_integer_extinf_needs_no_version_and_a_live_playlist_needs_no_endlist() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n"
    assert required_version(text.splitlines())[0] == 1
    assert media_problems(text, vod=False) == []
    assert media_problems(text) != []  # on demand: ENDLIST and PLAYLIST-TYPE:VOD


def test_required_versions_follow_section_7() -> None:
    def need(*lines: str) -> int:
        return required_version(list(lines))[0]

    assert need("#EXTINF:2,") == 1
    assert need("#EXTINF:2.0,") == 3
    assert need('#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0x1') == 2
    assert need("#EXT-X-BYTERANGE:10@0") == 4
    assert need("#EXT-X-I-FRAMES-ONLY") == 4
    assert need('#EXT-X-KEY:METHOD=AES-128,URI="k",KEYFORMATVERSIONS="1"') == 5
    assert need("#EXT-X-I-FRAMES-ONLY", '#EXT-X-MAP:URI="i.mp4"') == 5
    assert need('#EXT-X-MAP:URI="i.mp4"') == 6


def test_attribute_lists_keep_commas_inside_quoted_strings() -> None:
    assert parse_attributes('BANDWIDTH=1,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=2x2') == {
        "BANDWIDTH": "1",
        "CODECS": '"avc1.64001f,mp4a.40.2"',
        "RESOLUTION": "2x2",
    }
    assert parse_attributes("BANDWIDTH=1 ,X=2") is None
    assert parse_attributes('CODECS="unterminated') is None


# --------------------------------------------------------------------------- our own output


def _stored_master() -> str:
    rungs = build_ladder(1920, 1080, 30)
    return master_playlist(
        [
            (r, f"{r.name}/index.m3u8", VariantStats(r.maxrate, r.video_bitrate, "avc1.64001f", ()))
            for r in rungs
        ]
    )


@pytest.mark.parametrize("device", list(DeviceClass))
def test_the_master_we_store_and_every_served_variant_of_it_pass(device: DeviceClass) -> None:
    stored = _stored_master()
    assert master_problems(stored) == []
    present = {f"videos/abc/{r.name}/index.m3u8" for r in build_ladder(1920, 1080, 30)}
    sign = relative_signed(lambda key: f"exp=1&sig={key.replace('/', '_')}")
    served = render_master(stored, "videos/abc/master.m3u8", device, present, sign)
    assert master_problems(served, f"served to {device.name}") == []


def test_a_signed_media_playlist_passes() -> None:
    sign = relative_signed(lambda key: "exp=1&sig=abc")
    signed = sign_media_playlist(MEDIA, "videos/abc/720p/index.m3u8", sign)
    assert "?exp=1&sig=abc" in signed
    assert media_problems(signed) == []


def test_the_stored_master_never_declares_average_above_bandwidth() -> None:
    rung = build_ladder(640, 360, 30)[0]
    inverted = VariantStats(
        peak_bps=100_000, average_bps=150_000, codecs="avc1.64001e", segment_durations=()
    )
    text = master_playlist([(rung, "360p/index.m3u8", inverted)])
    assert "BANDWIDTH=150000,AVERAGE-BANDWIDTH=150000" in text
    assert master_problems(text) == []


# --------------------------------------------------------------------------- peak bit rate


def test_a_dense_tail_counts_with_the_segment_before_it() -> None:
    # 8 s of flat grey, then 0.6 s of noise: the short last segment is the densest.
    sizes, durations = [50_000, 48_000, 47_000, 46_000, 560_000], [2.0, 2.0, 2.0, 2.0, 0.6]
    expected = (46_000 + 560_000) * 8 / 2.6  # 0.6 s alone is under half the target
    assert peak_segment_bit_rate(sizes, durations, 2) == pytest.approx(expected)
    assert peak_bit_rate(sizes, durations, 2) == pytest.approx(expected)
    assert expected > sum(sizes) * 8 / sum(durations)


def test_a_dense_head_is_its_own_window() -> None:
    sizes, durations = [400_000, 10_000, 10_000], [2.0, 2.0, 1.0]
    assert peak_segment_bit_rate(sizes, durations, 2) == pytest.approx(400_000 * 8 / 2)


def test_windows_run_from_half_to_one_and_a_half_target_durations() -> None:
    # 1 s segments, target 2: windows of 1, 2 or 3 segments; never 4.
    sizes, durations = [100, 100, 100, 100, 9000, 100], [1.0] * 6
    assert peak_segment_bit_rate(sizes, durations, 2) == pytest.approx(9000 * 8 / 1)
    # target 4: windows of 2 to 6 s, so the dense second is averaged with a neighbour.
    assert peak_segment_bit_rate(sizes, durations, 4) == pytest.approx((9000 + 100) * 8 / 2)


def test_a_video_shorter_than_half_the_target_uses_its_densest_segment() -> None:
    assert peak_segment_bit_rate([1000], [0.6], 2) == pytest.approx(1000 * 8 / 0.6)
    assert peak_bit_rate([1000], [0.6], 2) == pytest.approx(1000 * 8 / 0.6)


def test_peak_matches_a_brute_force_reading_of_the_rfc() -> None:
    rng = random.Random(8216)
    for _ in range(300):
        n = rng.randint(1, 12)
        target = rng.choice([1, 2, 4, 6])
        durations = [round(rng.uniform(0.05, target + 0.49), 6) for _ in range(n)]
        sizes = [rng.randint(1, 2_000_000) for _ in range(n)]
        windows = [
            sum(sizes[i:j]) * 8 / sum(durations[i:j])
            for i in range(n)
            for j in range(i + 1, n + 1)
            if 0.5 * target <= sum(durations[i:j]) <= 1.5 * target
        ]
        ours = peak_segment_bit_rate(sizes, durations, target)
        assert ours == pytest.approx(peak_bit_rate(sizes, durations, target))
        if windows:
            assert ours == pytest.approx(max(windows))
        else:
            assert ours == pytest.approx(
                max(s * 8 / d for s, d in zip(sizes, durations, strict=True))
            )
