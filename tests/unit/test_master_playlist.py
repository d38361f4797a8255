"""Playlists a player receives (svc_stream/playback/manifest.py) and the master we store
(svc_transcode/hls.py master_playlist).

The served master holds only the device's rungs, drops variants whose playlist is
missing, lists the start rung first (players begin with the first variant) and signs
every URI that points inside the video's own folder, and nothing else.
"""

from __future__ import annotations

import pytest

from svc_stream.playback.devices import DeviceClass
from svc_stream.playback.manifest import (
    absolute_signed,
    is_master,
    parse_master,
    relative_signed,
    render_master,
    resolve_key,
    sign_media_playlist,
    variant_keys,
)
from svc_transcode.hls import VariantStats, master_playlist
from svc_transcode.ladder import build_ladder

KEY = "videos/abc/master.m3u8"
HEADER = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
INF = {
    "720p": "#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=720x1280,FRAME-RATE=30.000",
    "1080p": "#EXT-X-STREAM-INF:BANDWIDTH=5600000,RESOLUTION=1080x1920,FRAME-RATE=30.000",
    "480p": "#EXT-X-STREAM-INF:BANDWIDTH=1300000,RESOLUTION=480x854,FRAME-RATE=30.000",
    "360p": "#EXT-X-STREAM-INF:BANDWIDTH=700000,RESOLUTION=360x640,FRAME-RATE=30.000",
}
# What svc_transcode stores: the start rung first, then highest first.
STORED = "\n".join(HEADER + [f"{INF[n]}\n{n}/index.m3u8" for n in INF]) + "\n"
ALL_PRESENT = {f"videos/abc/{n}/index.m3u8" for n in INF}

sign = relative_signed(lambda key: f"sig={key}")


def served(device: DeviceClass, present: set[str] = ALL_PRESENT, text: str = STORED) -> str:
    return render_master(text, KEY, device, present, sign)


def variants_in(text: str) -> list[str]:
    return [line.split("/")[0] for line in text.splitlines() if line and line[0] != "#"]


def test_android_gets_an_exact_capped_master_starting_at_480p() -> None:
    assert (
        served(DeviceClass.ANDROID)
        == "\n".join(
            [
                *HEADER,
                INF["480p"],
                "480p/index.m3u8?sig=videos/abc/480p/index.m3u8",
                INF["720p"],
                "720p/index.m3u8?sig=videos/abc/720p/index.m3u8",
                INF["360p"],
                "360p/index.m3u8?sig=videos/abc/360p/index.m3u8",
            ]
        )
        + "\n"
    )


@pytest.mark.parametrize(
    ("device", "variants"),
    [
        (DeviceClass.WEB, ["720p", "1080p", "480p", "360p"]),
        (DeviceClass.IOS, ["720p", "1080p", "480p", "360p"]),
        (DeviceClass.UNKNOWN, ["480p", "720p", "1080p", "360p"]),
        (DeviceClass.ANDROID, ["480p", "720p", "360p"]),
    ],
)
def test_the_start_rung_is_listed_first_and_the_rest_keep_their_stored_order(
    device: DeviceClass, variants: list[str]
) -> None:
    assert variants_in(served(device)) == variants


def test_each_variant_keeps_its_own_stream_inf_tag() -> None:
    lines = served(DeviceClass.WEB).splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            name = line.split("/")[0]
            assert lines[i - 1] == INF[name]


def test_a_variant_missing_from_the_store_is_not_offered_and_the_start_falls_lower() -> None:
    present = ALL_PRESENT - {"videos/abc/480p/index.m3u8"}
    assert variants_in(served(DeviceClass.UNKNOWN, present)) == ["360p", "720p", "1080p"]
    assert variants_in(served(DeviceClass.ANDROID, present)) == ["360p", "720p"]


def test_header_tags_are_kept_in_order_and_their_uris_signed() -> None:
    iframe = '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="720p/iframes.m3u8"'
    text = STORED.replace("#EXT-X-INDEPENDENT-SEGMENTS", f"#EXT-X-INDEPENDENT-SEGMENTS\n{iframe}")
    lines = served(DeviceClass.WEB, text=text).splitlines()
    assert lines[:4] == [
        *HEADER,
        "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,"
        'URI="720p/iframes.m3u8?sig=videos/abc/720p/iframes.m3u8"',
    ]


def test_a_uri_outside_the_videos_folder_is_never_signed() -> None:
    signed: list[str] = []

    def recording(key: str, uri: str) -> str:
        signed.append(key)
        return f"{uri}?sig"

    text = STORED + (
        "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640x360\n../other/360p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640x360\nhttps://cdn.example/x.m3u8\n"
    )
    out = render_master(text, KEY, DeviceClass.WEB, ALL_PRESENT, recording)
    assert all(key.startswith("videos/abc/") for key in signed)
    assert "../other/360p/index.m3u8\n" in out  # passed through, unsigned
    assert "https://cdn.example/x.m3u8\n" in out


def test_getmanifest_masters_carry_absolute_signed_urls() -> None:
    absolute = absolute_signed(lambda key: f"https://media.example/{key}?sig=1")
    out = render_master(STORED, KEY, DeviceClass.ANDROID, ALL_PRESENT, absolute)
    assert variants_in(out) == ["https:", "https:", "https:"]
    assert "https://media.example/videos/abc/480p/index.m3u8?sig=1" in out.splitlines()[4]


def test_parse_master_reads_short_sides_and_keys() -> None:
    header, variants = parse_master(STORED, KEY)
    assert header == HEADER
    assert [(v.short_side, v.key) for v in variants] == [
        (720, "videos/abc/720p/index.m3u8"),
        (1080, "videos/abc/1080p/index.m3u8"),
        (480, "videos/abc/480p/index.m3u8"),
        (360, "videos/abc/360p/index.m3u8"),
    ]
    assert variant_keys(STORED, KEY) == [v.key for v in variants]
    assert is_master(STORED) and not is_master("#EXTM3U\n#EXTINF:2.0,\nseg_0000.ts\n")


@pytest.mark.parametrize(
    ("base", "uri", "expected"),
    [
        (KEY, "720p/index.m3u8", "videos/abc/720p/index.m3u8"),
        ("videos/abc/720p/index.m3u8", "seg_0001.ts", "videos/abc/720p/seg_0001.ts"),
        ("videos/abc/720p/index.m3u8", "../thumb.jpg", "videos/abc/thumb.jpg"),
        ("videos/abc/720p/index.m3u8", "../../def/720p/seg.ts", None),
        (KEY, "../def/master.m3u8", None),
        (KEY, "/videos/abc/720p/index.m3u8", None),
        (KEY, "https://evil.example/x.ts", None),
        (KEY, "720p/index.m3u8?sig=forged", None),
        (KEY, "720p/index.m3u8#frag", None),
        (KEY, "", None),
    ],
)
def test_only_uris_inside_the_videos_folder_resolve_to_keys(
    base: str, uri: str, expected: str | None
) -> None:
    assert resolve_key(base, uri) == expected


def test_a_media_playlist_has_every_segment_and_map_signed_and_tags_untouched() -> None:
    text = (
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n\n'
        "#EXTINF:2.000000,\nseg_0000.ts\n#EXTINF:1.5,\nseg_0001.ts\n#EXT-X-ENDLIST"
    )
    out = sign_media_playlist(text, "videos/abc/720p/index.m3u8", sign)
    assert out == (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        '#EXT-X-MAP:URI="init.mp4?sig=videos/abc/720p/init.mp4"\n\n'
        "#EXTINF:2.000000,\nseg_0000.ts?sig=videos/abc/720p/seg_0000.ts\n"
        "#EXTINF:1.5,\nseg_0001.ts?sig=videos/abc/720p/seg_0001.ts\n#EXT-X-ENDLIST\n"
    )


# --------------------------------------------------------------------------- what we store


def stats(peak: int) -> VariantStats:
    return VariantStats(peak, peak * 8 // 10, "avc1.640028,mp4a.40.2", (2.0, 2.0))


def test_the_stored_master_starts_at_720p_then_lists_highest_first() -> None:
    rungs = build_ladder(1080, 1920, 30)
    peaks = {"1080p": 5_600_000, "720p": 2_800_000, "480p": 1_300_000, "360p": 700_000}
    text = master_playlist([(r, f"{r.name}/index.m3u8", stats(peaks[r.name])) for r in rungs])
    assert text == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2800000,AVERAGE-BANDWIDTH=2240000,RESOLUTION=720x1280,"
        'CODECS="avc1.640028,mp4a.40.2",FRAME-RATE=30.000\n720p/index.m3u8\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=5600000,AVERAGE-BANDWIDTH=4480000,RESOLUTION=1080x1920,"
        'CODECS="avc1.640028,mp4a.40.2",FRAME-RATE=30.000\n1080p/index.m3u8\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=1300000,AVERAGE-BANDWIDTH=1040000,RESOLUTION=480x854,"
        'CODECS="avc1.640028,mp4a.40.2",FRAME-RATE=30.000\n480p/index.m3u8\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=700000,AVERAGE-BANDWIDTH=560000,RESOLUTION=360x640,"
        'CODECS="avc1.640028,mp4a.40.2",FRAME-RATE=30.000\n360p/index.m3u8\n'
    )


def test_the_stored_master_is_served_with_the_devices_start_first() -> None:
    rungs = build_ladder(1920, 1080, 30)
    text = master_playlist([(r, f"{r.name}/index.m3u8", stats(r.maxrate)) for r in rungs])
    present = {f"videos/abc/{r.name}/index.m3u8" for r in rungs}
    assert variants_in(served(DeviceClass.ANDROID, present, text)) == ["480p", "720p", "360p"]
    assert variants_in(served(DeviceClass.WEB, present, text)) == ["720p", "1080p", "480p", "360p"]
