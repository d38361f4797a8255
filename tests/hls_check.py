"""Our own HLS playlist checker, written from RFC 8216's rules, for every ladder tests publish.

Two levels:

- text only (`master_problems`, `media_problems`): the playlist's own syntax and the rules
  that need nothing else: tags that must or may appear once, EXT-X-TARGETDURATION against
  every EXTINF, EXT-X-VERSION against the features used (section 7), EXT-X-ENDLIST and
  EXT-X-PLAYLIST-TYPE:VOD for video on demand, attribute lists that parse. These also run on
  the signed playlists svc_stream serves.
- a ladder on disk (`ladder_problems`, `assert_hls_valid`): the master and each variant
  against the media they describe. BANDWIDTH must be at least the peak segment bit rate as
  section 4.3.4.2 defines it (the largest bit rate of any contiguous segments lasting 0.5 to
  1.5 times the target duration, sizes from the files, durations from EXTINF), and
  AVERAGE-BANDWIDTH the real average and at most BANDWIDTH; CODECS must be present and true
  (avc1 profile, constraint flags and level from the SPS, cross-checked with ffprobe's
  profile and level; mp4a.40.x when there is AAC audio, and only then); RESOLUTION and
  FRAME-RATE must match the stream; every URI must resolve; variants share one target
  duration (section 6.2.4); and when every segment starts with an IDR frame the playlists
  say so with EXT-X-INDEPENDENT-SEGMENTS (and never say so otherwise).

The checker computes everything itself rather than importing svc_transcode's measurement,
so a mistake there cannot hide here. Each function returns a list of problems (empty when
valid) so tests of the checker can assert that it fails, and why.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"

# --------------------------------------------------------------------------- parsing

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",\s]*)')
_DECIMAL_INTEGER = re.compile(r"^[0-9]{1,20}$")
_DECIMAL_FLOAT = re.compile(r"^-?[0-9]+(\.[0-9]*)?$")
_RESOLUTION = re.compile(r"^([0-9]+)x([0-9]+)$")

# Tags that belong only in one kind of playlist (section 4.3): mixing them is an error.
MEDIA_ONLY_TAGS = {
    "#EXTINF", "#EXT-X-BYTERANGE", "#EXT-X-DISCONTINUITY", "#EXT-X-KEY", "#EXT-X-MAP",
    "#EXT-X-PROGRAM-DATE-TIME", "#EXT-X-DATERANGE", "#EXT-X-TARGETDURATION",
    "#EXT-X-MEDIA-SEQUENCE", "#EXT-X-DISCONTINUITY-SEQUENCE", "#EXT-X-ENDLIST",
    "#EXT-X-PLAYLIST-TYPE", "#EXT-X-I-FRAMES-ONLY",
}  # fmt: skip
MASTER_ONLY_TAGS = {
    "#EXT-X-MEDIA", "#EXT-X-STREAM-INF", "#EXT-X-I-FRAME-STREAM-INF",
    "#EXT-X-SESSION-DATA", "#EXT-X-SESSION-KEY",
}  # fmt: skip
# Tags that may appear at most once in a playlist.
ONCE_IN_MEDIA = {
    "#EXT-X-VERSION", "#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-DISCONTINUITY-SEQUENCE", "#EXT-X-ENDLIST", "#EXT-X-PLAYLIST-TYPE",
    "#EXT-X-I-FRAMES-ONLY", "#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-START",
}  # fmt: skip
ONCE_IN_MASTER = {"#EXT-X-VERSION", "#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-START"}


def tag_name(line: str) -> str:
    return line.split(":", 1)[0]


def tag_value(line: str) -> str:
    return line.split(":", 1)[1] if ":" in line else ""


def parse_attributes(text: str) -> dict[str, str] | None:
    """An attribute list (section 4.2) as {name: raw value}; None when it does not parse."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _ATTRIBUTE.match(text, pos)
        if m is None or m.group(1) in out:
            return None
        out[m.group(1)] = m.group(2)
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                return None
            pos += 1
    return out


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")]


def _encoding_problems(text: str, where: str) -> list[str]:
    problems = []
    if text.startswith("\ufeff"):
        problems.append(f"{where}: starts with a byte order mark (section 4)")
    if any(ord(c) < 0x20 and c not in "\r\n\t" or 0x7F <= ord(c) <= 0x9F for c in text):
        problems.append(f"{where}: contains control characters (section 4)")
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        problems.append(f"{where}: the first line is not #EXTM3U (section 4.3.1.1)")
    return problems


def _version(lines: list[str], where: str, problems: list[str]) -> int:
    found = [tag_value(line) for line in lines if tag_name(line) == "#EXT-X-VERSION"]
    if not found:
        return 1
    if not _DECIMAL_INTEGER.match(found[0]):
        problems.append(f"{where}: EXT-X-VERSION {found[0]!r} is not a decimal-integer")
        return 1
    return int(found[0])


def _once(lines: list[str], tags: set[str], where: str, problems: list[str]) -> None:
    for tag in sorted(tags):
        count = sum(1 for line in lines if tag_name(line) == tag)
        if count > 1:
            problems.append(f"{where}: {tag} appears {count} times; at most once is allowed")


# --------------------------------------------------------------------------- master


@dataclass
class Variant:
    uri: str
    attributes: dict[str, str]

    @property
    def bandwidth(self) -> int:
        return int(self.attributes["BANDWIDTH"])

    @property
    def average_bandwidth(self) -> int | None:
        value = self.attributes.get("AVERAGE-BANDWIDTH")
        return int(value) if value is not None else None

    @property
    def codecs(self) -> list[str]:
        return [c.strip() for c in unquote(self.attributes.get("CODECS", '""')).split(",") if c]


@dataclass
class Master:
    version: int
    independent_segments: bool
    variants: list[Variant] = field(default_factory=list)


def parse_master(text: str, where: str = "master") -> tuple[Master, list[str]]:
    """The master playlist and the problems its text alone shows."""
    problems = _encoding_problems(text, where)
    lines = _lines(text)
    version = _version(lines, where, problems)
    _once(lines, ONCE_IN_MASTER, where, problems)
    master = Master(version, any(tag_name(ln) == "#EXT-X-INDEPENDENT-SEGMENTS" for ln in lines))
    pending: tuple[int, dict[str, str]] | None = None
    for number, line in enumerate(lines, 1):
        at = f"{where} line {number}"
        if not line.strip():
            continue
        if line.startswith("#"):
            name = tag_name(line)
            if pending is not None and name.startswith("#EXT"):
                problems.append(f"{at}: EXT-X-STREAM-INF on line {pending[0]} has no URI line")
                pending = None
            if name in MEDIA_ONLY_TAGS:
                problems.append(f"{at}: {name} is a media playlist tag, not allowed in a master")
            if name == "#EXT-X-STREAM-INF":
                attrs = parse_attributes(tag_value(line))
                if attrs is None:
                    problems.append(f"{at}: EXT-X-STREAM-INF attribute list does not parse")
                    continue
                problems += _stream_inf_problems(attrs, at)
                pending = (number, attrs)
            elif name in ("#EXT-X-MEDIA", "#EXT-X-I-FRAME-STREAM-INF"):
                if parse_attributes(tag_value(line)) is None:
                    problems.append(f"{at}: {name} attribute list does not parse")
            continue
        if pending is None:
            problems.append(f"{at}: URI {line!r} is not preceded by EXT-X-STREAM-INF")
            continue
        master.variants.append(Variant(line.strip(), pending[1]))
        pending = None
    if pending is not None:
        problems.append(f"{where} line {pending[0]}: EXT-X-STREAM-INF has no URI line")
    if not master.variants:
        problems.append(f"{where}: no EXT-X-STREAM-INF variants")
    return master, problems


def _stream_inf_problems(attrs: dict[str, str], at: str) -> list[str]:
    problems = []
    bandwidth = attrs.get("BANDWIDTH")
    if bandwidth is None:
        problems.append(f"{at}: EXT-X-STREAM-INF has no BANDWIDTH (section 4.3.4.2: REQUIRED)")
    elif not _DECIMAL_INTEGER.match(bandwidth):
        problems.append(f"{at}: BANDWIDTH {bandwidth!r} is not a decimal-integer")
        bandwidth = None
    average = attrs.get("AVERAGE-BANDWIDTH")
    if average is not None:
        if not _DECIMAL_INTEGER.match(average):
            problems.append(f"{at}: AVERAGE-BANDWIDTH {average!r} is not a decimal-integer")
        elif bandwidth is not None and int(average) > int(bandwidth):
            problems.append(f"{at}: AVERAGE-BANDWIDTH {average} exceeds BANDWIDTH {bandwidth}")
    codecs = attrs.get("CODECS")
    if codecs is None:
        problems.append(f"{at}: EXT-X-STREAM-INF has no CODECS")
    elif not (codecs.startswith('"') and codecs.endswith('"')) or not unquote(codecs).strip():
        problems.append(f"{at}: CODECS {codecs} is not a non-empty quoted-string")
    resolution = attrs.get("RESOLUTION")
    if resolution is not None and not _RESOLUTION.match(resolution):
        problems.append(f"{at}: RESOLUTION {resolution!r} is not a decimal-resolution")
    rate = attrs.get("FRAME-RATE")
    if rate is not None and not _DECIMAL_FLOAT.match(rate):
        problems.append(f"{at}: FRAME-RATE {rate!r} is not a decimal-floating-point")
    return problems


def master_problems(text: str, where: str = "master") -> list[str]:
    return parse_master(text, where)[1]


# --------------------------------------------------------------------------- media


@dataclass
class Segment:
    duration: float
    uri: str


@dataclass
class Media:
    version: int
    target_duration: int | None
    independent_segments: bool
    segments: list[Segment] = field(default_factory=list)


def required_version(lines: list[str]) -> tuple[int, str]:
    """The lowest EXT-X-VERSION the playlist's features need (section 7), and why."""
    need, why = 1, "no versioned features"
    i_frames_only = any(tag_name(line) == "#EXT-X-I-FRAMES-ONLY" for line in lines)

    def bump(version: int, reason: str) -> None:
        nonlocal need, why
        if version > need:
            need, why = version, reason

    for line in lines:
        name = tag_name(line)
        if name == "#EXTINF" and "." in tag_value(line).split(",", 1)[0]:
            bump(3, "floating-point EXTINF durations")
        elif name == "#EXT-X-KEY":
            attrs = parse_attributes(tag_value(line)) or {}
            if "IV" in attrs:
                bump(2, "the IV attribute of EXT-X-KEY")
            if "KEYFORMAT" in attrs or "KEYFORMATVERSIONS" in attrs:
                bump(5, "KEYFORMAT/KEYFORMATVERSIONS")
        elif name == "#EXT-X-BYTERANGE":
            bump(4, "EXT-X-BYTERANGE")
        elif name == "#EXT-X-I-FRAMES-ONLY":
            bump(4, "EXT-X-I-FRAMES-ONLY")
        elif name == "#EXT-X-MAP":
            if i_frames_only:
                bump(5, "EXT-X-MAP in an I-frames-only playlist")
            else:
                bump(6, "EXT-X-MAP (fMP4 or other initialization sections)")
    return need, why


def parse_media(text: str, where: str = "media", *, vod: bool = True) -> tuple[Media, list[str]]:
    """A media playlist and the problems its text alone shows."""
    problems = _encoding_problems(text, where)
    lines = _lines(text)
    version = _version(lines, where, problems)
    need, why = required_version(lines)
    if version < need:
        problems.append(f"{where}: EXT-X-VERSION {version} but {why} need version {need}")
    if version >= 7 and any(tag_name(line) == "#EXT-X-ALLOW-CACHE" for line in lines):
        problems.append(f"{where}: EXT-X-ALLOW-CACHE was removed in version 7")
    _once(lines, ONCE_IN_MEDIA, where, problems)

    targets = [tag_value(line) for line in lines if tag_name(line) == "#EXT-X-TARGETDURATION"]
    target: int | None = None
    if not targets:
        problems.append(f"{where}: no EXT-X-TARGETDURATION (section 4.3.3.1: REQUIRED)")
    elif not _DECIMAL_INTEGER.match(targets[0]):
        problems.append(f"{where}: EXT-X-TARGETDURATION {targets[0]!r} is not a decimal-integer")
    else:
        target = int(targets[0])
    media = Media(
        version, target, any(tag_name(ln) == "#EXT-X-INDEPENDENT-SEGMENTS" for ln in lines)
    )

    duration: float | None = None
    seen_segment = False
    ended_at: int | None = None
    for number, line in enumerate(lines, 1):
        at = f"{where} line {number}"
        if not line.strip():
            continue
        if ended_at is not None:
            problems.append(f"{at}: content after EXT-X-ENDLIST")
        if not line.startswith("#"):
            if duration is None:
                problems.append(f"{at}: segment URI {line!r} has no EXTINF")
            else:
                media.segments.append(Segment(duration, line.strip()))
            duration = None
            seen_segment = True
            continue
        name = tag_name(line)
        if name in MASTER_ONLY_TAGS:
            problems.append(f"{at}: {name} is a master playlist tag, not allowed in media")
        elif name == "#EXTINF":
            if duration is not None:
                problems.append(f"{at}: EXTINF follows an EXTINF with no URI between")
            raw = tag_value(line).split(",", 1)[0].strip()
            if not _DECIMAL_FLOAT.match(raw) or float(raw) < 0:
                problems.append(f"{at}: EXTINF duration {raw!r} is not a non-negative number")
                duration = 0.0
            else:
                duration = float(raw)
            if "," not in tag_value(line):
                problems.append(f"{at}: EXTINF has no comma after its duration")
        elif name in ("#EXT-X-MEDIA-SEQUENCE", "#EXT-X-DISCONTINUITY-SEQUENCE"):
            if seen_segment or duration is not None:
                problems.append(f"{at}: {name} must appear before the first media segment")
            if not _DECIMAL_INTEGER.match(tag_value(line)):
                problems.append(f"{at}: {name} {tag_value(line)!r} is not a decimal-integer")
        elif name == "#EXT-X-PLAYLIST-TYPE" and tag_value(line) not in ("VOD", "EVENT"):
            problems.append(f"{at}: EXT-X-PLAYLIST-TYPE {tag_value(line)!r} is not VOD or EVENT")
        elif name == "#EXT-X-ENDLIST":
            ended_at = number
    if duration is not None:
        problems.append(f"{where}: the last EXTINF has no segment URI")
    if not media.segments:
        problems.append(f"{where}: no media segments")
    if target is not None:
        for i, seg in enumerate(media.segments):
            if math.floor(seg.duration + 0.5) > target:
                problems.append(
                    f"{where}: segment {i} lasts {seg.duration} s, which rounds above "
                    f"EXT-X-TARGETDURATION {target} (section 4.3.3.1)"
                )
    if vod:
        if ended_at is None:
            problems.append(f"{where}: no EXT-X-ENDLIST, but the video is on demand")
        kinds = [tag_value(line) for line in lines if tag_name(line) == "#EXT-X-PLAYLIST-TYPE"]
        if kinds != ["VOD"]:
            problems.append(f"{where}: EXT-X-PLAYLIST-TYPE is {kinds or 'missing'}, not VOD")
    return media, problems


def media_problems(text: str, where: str = "media", *, vod: bool = True) -> list[str]:
    return parse_media(text, where, vod=vod)[1]


# --------------------------------------------------------------------------- bit rates


def peak_bit_rate(sizes: list[int], durations: list[float], target_duration: float) -> float:
    """Section 4.3.4.2: the largest bit rate over contiguous segments lasting 0.5-1.5x the
    target duration (sum of sizes in bits / sum of durations).

    When no run of segments qualifies (a video shorter than half the target duration) the
    rule is vacuous; the strictest reading, the largest single segment's rate, is used.
    """
    best = 0.0
    qualified = False
    for i in range(len(sizes)):
        for j in range(i + 1, len(sizes) + 1):
            seconds = math.fsum(durations[i:j])
            if 0.5 * target_duration - 1e-6 <= seconds <= 1.5 * target_duration + 1e-6:
                if seconds > 0:
                    qualified = True
                    best = max(best, sum(sizes[i:j]) * 8 / seconds)
    if not qualified:
        best = max((s * 8 / d for s, d in zip(sizes, durations, strict=True) if d > 0), default=0)
    return best


def average_bit_rate(sizes: list[int], durations: list[float]) -> float:
    total = sum(durations)
    return sum(sizes) * 8 / total if total > 0 else 0.0


# --------------------------------------------------------------------------- media facts


async def _run(*argv: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode()[-1000:]}")
    return out


def nal_units(annex_b: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream (start codes removed)."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", annex_b)]
    units = []
    for k, start in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(annex_b)
        units.append(annex_b[start:end].rstrip(b"\x00"))
    return [u for u in units if u]


# H.264 profile_idc by ffprobe's profile name.
PROFILE_IDC = {
    "Baseline": 66, "Constrained Baseline": 66, "Main": 77, "Extended": 88, "High": 100,
    "High 10": 110, "High 10 Intra": 110, "High 4:2:2": 122, "High 4:2:2 Intra": 122,
    "High 4:4:4 Predictive": 244, "High 4:4:4 Intra": 244,
}  # fmt: skip


@dataclass
class SegmentFacts:
    streams: list[dict[str, Any]]
    first_frame: dict[str, Any] | None
    avc1: str | None  # from the first SPS
    starts_with_idr: bool

    def video(self) -> dict[str, Any] | None:
        return next((s for s in self.streams if s.get("codec_type") == "video"), None)

    def audio(self) -> dict[str, Any] | None:
        return next((s for s in self.streams if s.get("codec_type") == "audio"), None)


async def segment_facts(path: Path, *, streams: bool = True) -> SegmentFacts:
    """ffprobe's streams (when asked) and first video frame, plus the first access unit's
    NAL units."""
    streams_argv = [FFPROBE, "-v", "error", "-of", "json", "-show_streams", str(path)]
    frame_argv = [
        FFPROBE, "-v", "error", "-of", "json", "-select_streams", "v:0",
        "-read_intervals", "%+#1", "-show_frames",
        "-show_entries", "frame=key_frame,pict_type", str(path),
    ]  # fmt: skip
    probed = json.loads(await _run(*streams_argv)) if streams else {}
    frames = json.loads(await _run(*frame_argv)).get("frames") or []
    avc1, idr = None, False
    es_argv = [
        FFMPEG, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
        "-frames:v", "1", "-f", "h264", "pipe:1",
    ]  # fmt: skip
    codecs = {s.get("codec_name") for s in probed.get("streams", [])}
    if frames and (not streams or "h264" in codecs):
        try:
            units = nal_units(await _run(*es_argv))
        except RuntimeError:  # not H.264: the CODECS check reports it
            units = []
        sps = next((u for u in units if u[0] & 0x1F == 7 and len(u) >= 4), None)
        if sps is not None:
            avc1 = f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"
        vcl = next((u for u in units if 1 <= u[0] & 0x1F <= 5), None)
        idr = vcl is not None and vcl[0] & 0x1F == 5
    return SegmentFacts(probed.get("streams", []), frames[0] if frames else None, avc1, idr)


def _expected_audio(stream: dict[str, Any]) -> str | None:
    if stream.get("codec_name") == "aac":
        profile = str(stream.get("profile") or "")
        return {"HE-AAC": "mp4a.40.5", "HE-AACv2": "mp4a.40.29"}.get(profile, "mp4a.40.2")
    return {"mp3": "mp4a.40.34", "ac3": "ac-3", "eac3": "ec-3"}.get(str(stream.get("codec_name")))


def _codecs_problems(variant: Variant, facts: SegmentFacts, at: str) -> list[str]:
    problems = []
    declared = [c.lower() for c in variant.codecs]
    video = facts.video()
    expected: list[str] = []
    if video is not None:
        if video.get("codec_name") != "h264":
            problems.append(f"{at}: video codec {video.get('codec_name')} is not checked here")
        elif facts.avc1 is None:
            problems.append(f"{at}: no SPS at the start of the first segment")
        else:
            expected.append(facts.avc1)
            profile_idc = int(facts.avc1[5:7], 16)
            level_idc = int(facts.avc1[9:11], 16)
            if PROFILE_IDC.get(str(video.get("profile"))) not in (None, profile_idc):
                problems.append(
                    f"{at}: SPS profile_idc {profile_idc} but ffprobe says {video.get('profile')}"
                )
            if video.get("level") not in (None, level_idc):
                problems.append(f"{at}: SPS level {level_idc} but ffprobe {video.get('level')}")
    audio = facts.audio()
    if audio is not None:
        want = _expected_audio(audio)
        if want is None:
            problems.append(f"{at}: audio codec {audio.get('codec_name')} has no CODECS string")
        else:
            expected.append(want)
    if sorted(declared) != sorted(expected):
        problems.append(f"{at}: CODECS {variant.codecs} but the media is {expected}")
    return problems


def _display_size(video: dict[str, Any]) -> tuple[int, int]:
    width, height = int(video["width"]), int(video["height"])
    sar = str(video.get("sample_aspect_ratio") or "1:1")
    num, _, den = sar.partition(":")
    if num.isdigit() and den.isdigit() and int(num) and int(den) and num != den:
        width = round(width * int(num) / int(den))
    return width, height


def _rate(value: str | None) -> float | None:
    if not value or "/" not in value:
        return None
    num, den = value.split("/", 1)
    return float(num) / float(den) if float(den) else None


# --------------------------------------------------------------------------- the ladder


@dataclass
class VariantReport:
    uri: str
    target_duration: int | None
    durations: list[float]
    sizes: list[int]
    peak_bps: float
    average_bps: float


@dataclass
class LadderReport:
    problems: list[str]
    variants: list[VariantReport]


def _resolve(base: Path, uri: str, root: Path) -> Path | None:
    """A URI as a file under `root`, or None when it is absolute, has a query or escapes."""
    if "://" in uri or uri.startswith("/") or "?" in uri or "#" in uri:
        return None
    path = (base / uri).resolve()
    try:
        path.relative_to(root.resolve())
    except ValueError:
        return None
    return path


async def check_ladder(
    root: Path, master_name: str = "master.m3u8", *, require_independent: bool = True
) -> LadderReport:
    """Every rule above on the ladder published under `root`."""
    root = Path(root)
    master_path = root / master_name
    if not master_path.is_file():
        return LadderReport([f"{master_path} does not exist"], [])
    master, problems = parse_master(master_path.read_text(encoding="utf-8"), master_name)
    reports: list[VariantReport] = []
    all_idr = True
    media_declares_all = True
    targets: dict[str, int] = {}
    for variant in master.variants:
        at = f"variant {variant.uri}"
        playlist = _resolve(root, variant.uri, root)
        if playlist is None or not playlist.is_file():
            problems.append(f"{at}: the URI does not resolve to a file under {root}")
            continue
        media, media_problems_ = parse_media(playlist.read_text(encoding="utf-8"), variant.uri)
        problems += media_problems_
        media_declares_all = media_declares_all and media.independent_segments
        if media.target_duration is not None:
            targets[variant.uri] = media.target_duration
        sizes: list[int] = []
        for seg in media.segments:
            path = _resolve(playlist.parent, seg.uri, root)
            if path is None or not path.is_file():
                problems.append(f"{at}: segment {seg.uri} does not resolve to a file")
                sizes.append(0)
            else:
                sizes.append(path.stat().st_size)
                if not sizes[-1]:
                    problems.append(f"{at}: segment {seg.uri} is empty")
        durations = [s.duration for s in media.segments]
        if not durations or 0 in sizes or media.target_duration is None:
            continue
        peak = peak_bit_rate(sizes, durations, media.target_duration)
        average = average_bit_rate(sizes, durations)
        reports.append(
            VariantReport(variant.uri, media.target_duration, durations, sizes, peak, average)
        )
        if "BANDWIDTH" in variant.attributes and _DECIMAL_INTEGER.match(
            variant.attributes["BANDWIDTH"]
        ):
            if variant.bandwidth < math.floor(peak):
                problems.append(
                    f"{at}: BANDWIDTH {variant.bandwidth} is below the peak segment bit rate "
                    f"{peak:.0f} (section 4.3.4.2)"
                )
            declared_avg = variant.average_bandwidth
            if declared_avg is not None and abs(declared_avg - average) > max(0.02 * average, 8):
                problems.append(
                    f"{at}: AVERAGE-BANDWIDTH {declared_avg} but the average segment bit rate "
                    f"is {average:.0f}"
                )

        segment_paths = [_resolve(playlist.parent, s.uri, root) for s in media.segments]
        facts = await asyncio.gather(
            *(segment_facts(p, streams=i == 0) for i, p in enumerate(segment_paths) if p)
        )
        for seg, fact in zip(media.segments, facts, strict=True):
            frame = fact.first_frame
            key = (
                frame is not None and frame.get("key_frame") == 1 and frame.get("pict_type") == "I"
            )
            if not (key and fact.starts_with_idr):
                all_idr = False
                if media.independent_segments or master.independent_segments:
                    problems.append(
                        f"{at}: segment {seg.uri} does not start with an IDR keyframe, but the "
                        f"playlist declares EXT-X-INDEPENDENT-SEGMENTS"
                    )
        first = facts[0]
        problems += _codecs_problems(variant, first, at)
        for seg, fact in zip(media.segments[1:], facts[1:], strict=True):
            if fact.avc1 != first.avc1:
                problems.append(f"{at}: segment {seg.uri} has SPS {fact.avc1}, not {first.avc1}")
        video = first.video()
        resolution = variant.attributes.get("RESOLUTION")
        if video is not None:
            if resolution is None:
                problems.append(f"{at}: video but no RESOLUTION")
            elif _RESOLUTION.match(resolution):
                size = tuple(int(v) for v in resolution.split("x"))
                coded = (int(video["width"]), int(video["height"]))
                if size not in (coded, _display_size(video)):
                    problems.append(f"{at}: RESOLUTION {resolution} but the video is {coded}")
            declared_rate = variant.attributes.get("FRAME-RATE")
            actual = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
            if declared_rate and _DECIMAL_FLOAT.match(declared_rate) and actual:
                if abs(float(declared_rate) - actual) > 0.05:
                    problems.append(
                        f"{at}: FRAME-RATE {declared_rate} but the video has {actual:.3f}"
                    )
    if master.variants and all_idr and require_independent:
        if not (master.independent_segments or media_declares_all):
            problems.append(
                "every segment starts with an IDR frame but no playlist says "
                "EXT-X-INDEPENDENT-SEGMENTS"
            )
    if len(set(targets.values())) > 1:
        problems.append(f"variants have different target durations {targets} (section 6.2.4)")
    totals = [sum(r.durations) for r in reports]
    if totals and max(totals) - min(totals) > 0.5:
        problems.append(f"variants last different times: {[round(t, 3) for t in totals]}")
    return LadderReport(problems, reports)


async def ladder_problems(root: Path, master_name: str = "master.m3u8") -> list[str]:
    return (await check_ladder(root, master_name)).problems


async def assert_hls_valid(root: Path, master_name: str = "master.m3u8") -> LadderReport:
    """Fail with every RFC 8216 problem found in the ladder under `root`."""
    report = await check_ladder(root, master_name)
    assert not report.problems, "HLS ladder breaks RFC 8216:\n  " + "\n  ".join(report.problems)
    return report


def assert_playlist_valid(text: str, where: str = "playlist") -> None:
    """Text-level checks on one served playlist, master or media."""
    is_master = any(tag_name(line) == "#EXT-X-STREAM-INF" for line in _lines(text))
    problems = master_problems(text, where) if is_master else media_problems(text, where)
    assert not problems, f"{where} breaks RFC 8216:\n  " + "\n  ".join(problems)
