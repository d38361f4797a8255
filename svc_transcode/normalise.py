"""Media normalisation: what the source really is, decided once, before the ladder is built.

Containers and codecs describe a picture in many ways, and a transcoder that takes any
one of them at face value publishes squeezed, combed, washed-out or silent video. This
stage reads the probe (ffprobe's JSON, `ProbeResult.data`) and settles five facts; the
ladder (svc_transcode/ladder.py) and the filter graph (`plan`) are built from them only.

Display size
    Coded size x sample aspect ratio (ffprobe writes "4:3"; "0:1"/"N/A" mean square),
    then the rotation (legacy `rotate` tag or display-matrix side data). The SAR widens or
    narrows the width; the height (the lines the camera recorded) is kept, as players do.
    Every rung is scaled to an exact WxH with that aspect and `setsar=1`: square pixels,
    because players disagree on honouring a SAR inside HLS segments.
    (reels/media/probe.py computes it, since svc_upload stores the same size.)

Scan type
    ffprobe's `field_order`: "progressive" is trusted; "tt"/"bt" are top field first and
    "bb"/"tb" bottom field first (by *display* order). When the codec does not say
    (field_order absent or "unknown": MPEG-4 part 2, MJPEG, many remuxes) the `idet`
    filter reads a short sample from the middle of the file (`detect_scan`), with a
    stricter comb threshold than its default, which mistakes sharp moving edges for combs.
    Interlaced sources are deinterlaced first of all with `bwdif` (one frame per frame:
    25i -> 25p, then the usual frame-rate cap), with the parity set explicitly so
    idet-detected sources whose frames carry no interlace flag are handled right.

Colour
    The H.264 rungs are 8-bit SDR BT.709, tagged so in the bitstream (VUI).
    * HDR (transfer smpte2084 = PQ, or arib-std-b67 = HLG; BT.2020 primaries assumed when
      untagged) is tone-mapped: zscale to linear light (nominal peak 100 nits), float RGB,
      BT.709 primaries, Hable curve (`tonemap`, desat=0), back to BT.709 transfer, matrix
      and limited range. A 4K HDR phone clip is scaled to the top rung's size in the first
      zscale, so the float stages run on at most 1080p.
    * Wide-gamut SDR (BT.2020 primaries with an SDR transfer, some Android phones) gets
      zscale's primaries conversion without tone mapping.
    * Other SDR is converted to the BT.709 matrix and limited range when it is not
      already (BT.601 SD, full-range phone/MJPEG video); untagged video counts as BT.709
      from 720 lines (or 1280 columns) up and BT.601 below, as players assume.
    Fallback when this ffmpeg lacks zscale (Debian's 5.1 has it; a minimal build may not):
    the `colorspace` filter converts BT.2020 to BT.709 treating the transfer as BT.2020's
    SDR curve. PQ/HLG then look flat and too bright, but play, and the rungs are still
    honestly tagged BT.709; the log says so.

Audio track
    Candidates are the audio streams whose codec this ffmpeg knows, default disposition
    first, then in file order (reels.media.probe.audio_candidates). `pick_audio` decodes a
    second of each in turn and takes the first that yields frames: an iPhone's default
    Apple APAC (spatial audio) track is skipped for its stereo AAC companion. With no
    decodable track the video is published silent rather than failed.

Corruption
    Judged by whether frames come out of a decode, not by decoder warnings (see
    reels.media.probe.check_decodes); the ladder's own decoder errors are judged by
    reels.media.ffmpeg_run.damage_verdict.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from reels.media.ffmpeg_run import FFMPEG, run
from reels.media.probe import ProbeLimits, ProbeResult, audio_candidates, parse_probe

log = logging.getLogger(__name__)

__all__ = [
    "Colour",
    "Plan",
    "SourceFacts",
    "detect_scan",
    "filter_available",
    "normalise",
    "pick_audio",
    "plan",
    "settle",
]

# field_order -> parity by display order ("tb": top coded first, bottom shown first).
_FIELD_PARITY = {"tt": "tff", "bt": "tff", "bb": "bff", "tb": "bff"}
PQ, HLG = "smpte2084", "arib-std-b67"
HD_LINES, HD_COLUMNS = 720, 1280
# idet: the share of decided frames (TFF+BFF+progressive) that must be interlaced, and a
# minimum count so a few misjudged frames of a still picture decide nothing.
# IDET_INTL_THRES: idet's default (1.04) calls sharp-edged, fast-moving *progressive*
# footage 75-85 % interlaced (measured on testsrc2 in MPEG-4 and H.264); at 1.5 those are
# 0 % while woven interlaced footage stays at 98-100 % (tests/unit/test_normalise.py).
IDET_INTL_THRES = 1.5
IDET_INTERLACED_SHARE = 0.5
IDET_MIN_FRAMES = 5
IDET_SAMPLE_FRAMES = 100
AUDIO_PROBE_SECONDS = 1.0
TONEMAP_NOMINAL_PEAK = 100  # nits mapped to 1.0 before the curve (zscale npl)

# ffprobe color_space -> the name swscale and zscale both accept for the matrix.
_MATRIX = {
    "bt709": "bt709",
    "bt470bg": "bt470bg",
    "smpte170m": "smpte170m",
    "bt2020nc": "bt2020nc",
    "bt2020c": "bt2020c",
}
# ffprobe transfer names zscale accepts as they are.
_ZSCALE_TRANSFERS = frozenset(
    {"bt709", "smpte170m", "bt470bg", "bt470m", "bt2020-10", "bt2020-12", "linear",
     "iec61966-2-1", PQ, HLG}
)  # fmt: skip
# zscale's name -> swscale's `in_color_matrix` name.
_SWS_MATRIX = {
    "bt709": "bt709",
    "bt470bg": "bt601",
    "smpte170m": "smpte170m",
    "bt2020nc": "bt2020",
    "bt2020c": "bt2020",
}


@dataclass(frozen=True)
class Colour:
    """How the source's pixel values are to be read."""

    matrix: str  # zscale names: bt709, bt470bg, smpte170m, bt2020nc, bt2020c
    primaries: str  # ffprobe names; "bt709" when untagged SDR
    transfer: str  # ffprobe names; "bt709" when untagged SDR
    full_range: bool
    bit_depth: int

    @property
    def hdr(self) -> str | None:
        """ "pq" or "hlg" for HDR transfer functions, else None."""
        return {PQ: "pq", HLG: "hlg"}.get(self.transfer)

    @property
    def wide_gamut(self) -> bool:
        return self.primaries == "bt2020"

    @property
    def is_bt709_limited(self) -> bool:
        """Already what the rungs are: no colour conversion needed."""
        return (
            self.hdr is None
            and not self.wide_gamut
            and self.matrix == "bt709"
            and not self.full_range
        )


@dataclass(frozen=True)
class SourceFacts:
    """What the source really is; everything the ladder and the filter graph depend on."""

    duration_s: float
    width: int  # displayed (SAR and rotation applied)
    height: int
    coded_width: int
    coded_height: int
    sample_aspect_ratio: Fraction
    rotation: int
    fps: float
    video_index: int  # absolute stream index of the video used
    first_video: bool  # it is the file's first video stream (maps as 0:v:0)
    scan: str  # "progressive" | "interlaced" | "unknown" (until settled by idet)
    field_parity: str | None  # "tff" | "bff" when interlaced
    colour: Colour
    audio_candidates: tuple[int, ...]  # absolute stream indices, best first
    audio_index: int | None  # the track to publish; None: silent
    audio_checked: bool = False  # `pick_audio` decoded it

    @property
    def interlaced(self) -> bool:
        return self.scan == "interlaced"

    @property
    def has_audio(self) -> bool:
        return self.audio_index is not None


def _bit_depth(stream: dict[str, Any]) -> int:
    raw = stream.get("bits_per_raw_sample")
    try:
        if raw:
            return int(raw)
    except (TypeError, ValueError):
        pass
    pix = stream.get("pix_fmt") or ""
    found = re.search(r"p(9|10|12|14|16)(?:le|be)?$", pix)
    return int(found.group(1)) if found else 8


def colour_of(stream: dict[str, Any], coded_w: int, coded_h: int) -> Colour:
    """The colour facts, with untagged values filled the way players fill them."""
    transfer = stream.get("color_transfer") or "unknown"
    primaries = stream.get("color_primaries") or "unknown"
    space = stream.get("color_space") or "unknown"
    hdr = transfer in (PQ, HLG)
    if primaries == "unknown" or primaries == "unspecified":
        primaries = "bt2020" if hdr or space.startswith("bt2020") else "bt709"
    if transfer in ("unknown", "unspecified"):
        transfer = "bt2020-10" if primaries == "bt2020" else "bt709"
    matrix = _MATRIX.get(space)
    if matrix is None:  # untagged (or exotic: fcc, ycgco, gbr...)
        if hdr or primaries == "bt2020":
            matrix = "bt2020nc"
        elif coded_h >= HD_LINES or coded_w >= HD_COLUMNS:
            matrix = "bt709"
        else:
            matrix = "smpte170m"
    pix = stream.get("pix_fmt") or ""
    full = stream.get("color_range") == "pc" or pix.startswith("yuvj")
    return Colour(
        matrix=matrix,
        primaries=primaries,
        transfer=transfer,
        full_range=full,
        bit_depth=_bit_depth(stream),
    )


def scan_of(stream: dict[str, Any]) -> tuple[str, str | None]:
    """(scan, parity) from ffprobe's field_order; ("unknown", None) when it is silent."""
    order = stream.get("field_order")
    if order == "progressive":
        return "progressive", None
    if order in _FIELD_PARITY:
        return "interlaced", _FIELD_PARITY[order]
    return "unknown", None


def normalise(
    source: ProbeResult | dict[str, Any], limits: ProbeLimits | None = None
) -> SourceFacts:
    """The facts ffprobe's JSON alone settles (pure: no ffmpeg runs).

    `scan` may be "unknown" and the audio track is only the best candidate until
    `settle` has looked at the file itself.
    """
    if isinstance(source, dict):
        source = parse_probe(source, limits or ProbeLimits())
    data = source.data
    streams = data.get("streams") or []
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    video = videos[0]  # parse_probe refused a file without one
    all_videos = [s for s in streams if s.get("codec_type") == "video"]
    index = int(video.get("index", 0))
    coded_w, coded_h = int(video["width"]), int(video["height"])
    scan, parity = scan_of(video)
    candidates = tuple(int(s.get("index", -1)) for s in audio_candidates(streams))
    return SourceFacts(
        duration_s=source.duration_s,
        width=source.width,
        height=source.height,
        coded_width=coded_w,
        coded_height=coded_h,
        sample_aspect_ratio=source.sample_aspect_ratio,
        rotation=source.rotation,
        fps=source.fps,
        video_index=index,
        first_video=bool(all_videos) and all_videos[0] is video,
        scan=scan,
        field_parity=parity,
        colour=colour_of(video, coded_w, coded_h),
        audio_candidates=candidates,
        audio_index=candidates[0] if candidates else None,
    )


# ------------------------------------------------------------------ looking at the file


_IDET = re.compile(
    r"Multi frame detection:\s*TFF:\s*(\d+)\s*BFF:\s*(\d+)\s*Progressive:\s*(\d+)", re.IGNORECASE
)


def judge_idet(stderr: str) -> tuple[str, str | None]:
    """(scan, parity) from idet's summary; "progressive" when it saw too little to say."""
    found = _IDET.findall(stderr)
    if not found:
        return "progressive", None
    tff, bff, progressive = (int(v) for v in found[-1])
    interlaced = tff + bff
    decided = interlaced + progressive
    if interlaced >= IDET_MIN_FRAMES and interlaced >= IDET_INTERLACED_SHARE * decided:
        return "interlaced", "tff" if tff >= bff else "bff"
    return "progressive", None


async def detect_scan(src: Path, facts: SourceFacts) -> tuple[str, str | None]:
    """Run `idet` over up to IDET_SAMPLE_FRAMES frames from a third of the way in (the
    first frames are often a still title or black, which idet cannot judge)."""
    start = max(0.0, min(facts.duration_s / 3, facts.duration_s - 4.0))
    argv = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "info"]
    if start > 0:
        argv += ["-ss", f"{start:.3f}"]
    argv += [
        "-i", str(src), "-map", _video_map(facts), "-an", "-sn", "-dn",
        "-vf", f"idet=intl_thres={IDET_INTL_THRES}",
        "-frames:v", str(IDET_SAMPLE_FRAMES), "-f", "null", "-",
    ]  # fmt: skip
    done = await run(argv, timeout_s=60)
    return judge_idet(done.stderr_tail)


async def _audio_decodes(src: Path, index: int) -> bool:
    done = await run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-t", f"{AUDIO_PROBE_SECONDS:g}", "-i", str(src),
            "-map", f"0:{index}", "-f", "framecrc", "-",
        ],
        capture_stdout=True,
        timeout_s=60,
    )  # fmt: skip
    frames = sum(1 for line in done.stdout.splitlines() if line and not line.startswith(b"#"))
    return done.returncode == 0 and frames > 0


async def pick_audio(src: Path, facts: SourceFacts) -> int | None:
    """The first candidate track that decodes (default first); None: publish silent."""
    for index in facts.audio_candidates:
        if await _audio_decodes(src, index):
            return index
        log.info("audio stream %d of %s does not decode; trying the next", index, src.name)
    return None


async def settle(src: Path, facts: SourceFacts) -> SourceFacts:
    """Complete the facts ffprobe left open by looking at the file: scan type via idet
    when the codec does not say, and which audio track really decodes."""
    scan, parity = facts.scan, facts.field_parity
    if scan == "unknown":
        scan, parity = await detect_scan(src, facts)
    audio = await pick_audio(src, facts)
    return replace(facts, scan=scan, field_parity=parity, audio_index=audio, audio_checked=True)


_filters: dict[str, bool] = {}


async def filter_available(name: str) -> bool:
    """Whether this ffmpeg build has the filter `name` (asked once per process)."""
    if name not in _filters:
        done = await run([FFMPEG, "-hide_banner", "-filters"], capture_stdout=True, timeout_s=30)
        names = {
            parts[1]
            for line in done.stdout.decode("utf-8", "replace").splitlines()
            if len(parts := line.split()) >= 2
        }
        _filters[name] = name in names
    return _filters[name]


# ------------------------------------------------------------------ the filter graph

# What every H.264 rung says about its colour (H.264 VUI), whatever the source was.
OUTPUT_COLOUR_ARGS: tuple[str, ...] = (
    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
    "-color_range", "tv",
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """How hls.build_ladder_command turns this source into rungs."""

    video_map: str  # "0:v:0" or "0:<index>"
    pre_filters: tuple[str, ...]  # deinterlacing: before the frame-rate cap
    colour_filters: tuple[str, ...]  # to 8-bit BT.709 SDR: after the cap, before split
    audio_map: str | None  # "0:<index>"; None: silent
    output_args: tuple[str, ...]
    thumbnail_filters: tuple[str, ...]  # the same normalisation for the source thumbnail


def _video_map(facts: SourceFacts) -> str:
    return "0:v:0" if facts.first_video else f"0:{facts.video_index}"


def deinterlace_filter(facts: SourceFacts) -> str | None:
    if not facts.interlaced:
        return None
    return f"bwdif=mode=send_frame:parity={facts.field_parity or 'auto'}:deint=all"


def colour_filters(
    colour: Colour, *, size: tuple[int, int] | None = None, zscale: bool = True
) -> list[str]:
    """Filters that turn the source's pixels into 8-bit 4:2:0 BT.709 limited range.

    `size`: scale to it in the same step (HDR only, to keep the float stages small).
    """
    rin = "pc" if colour.full_range else "tv"
    if colour.hdr is not None or colour.wide_gamut:
        if not zscale:
            return [
                "colorspace=all=bt709:iall=bt2020:itrc=bt2020-10:"
                f"irange={'jpeg' if colour.full_range else 'mpeg'}:range=mpeg:format=yuv420p"
            ]
        tin = colour.transfer if colour.transfer in _ZSCALE_TRANSFERS else "bt2020-10"
        resize = f"w={size[0]}:h={size[1]}:f=bicubic:" if size else ""
        source = f"zscale={resize}tin={tin}:min={colour.matrix}:pin={colour.primaries}:rin={rin}"
        if colour.hdr is None:  # wide-gamut SDR: primaries only
            return [f"{source}:t=bt709:m=bt709:p=bt709:r=tv", "format=yuv420p"]
        return [
            f"{source}:t=linear:npl={TONEMAP_NOMINAL_PEAK}",
            "format=gbrpf32le",
            "zscale=p=bt709",
            "tonemap=tonemap=hable:desat=0",
            "zscale=t=bt709:m=bt709:r=tv",
            "format=yuv420p",
        ]
    if colour.is_bt709_limited:
        return []  # hls adds format=yuv420p (bit depth, chroma) as before
    return [
        f"scale=in_color_matrix={_SWS_MATRIX[colour.matrix]}:out_color_matrix=bt709:"
        f"in_range={rin}:out_range=tv"
    ]


def plan(facts: SourceFacts, top: tuple[int, int] | None = None, *, zscale: bool = True) -> Plan:
    """The filter graph pieces for these facts; `top` is the top rung's (width, height)."""
    deint = deinterlace_filter(facts)
    pre = (deint,) if deint else ()
    shrink = (
        top
        if top is not None
        and facts.colour.hdr is not None
        and top[0] * top[1] < facts.width * facts.height
        else None
    )
    colour = tuple(colour_filters(facts.colour, size=shrink, zscale=zscale))
    # The thumbnail has its own size, so it is tone-mapped at the source's.
    thumb = colour if shrink is None else tuple(colour_filters(facts.colour, zscale=zscale))
    return Plan(
        video_map=_video_map(facts),
        pre_filters=pre,
        colour_filters=colour,
        audio_map=f"0:{facts.audio_index}" if facts.audio_index is not None else None,
        output_args=OUTPUT_COLOUR_ARGS,
        thumbnail_filters=pre + thumb,
    )


async def normalise_file(src: Path, source: ProbeResult) -> SourceFacts:
    """`normalise` then `settle`: the facts for a probed file."""
    facts = normalise(source)
    return await settle(src, facts)


def describe(facts: SourceFacts) -> str:
    """One log line."""
    c = facts.colour
    return (
        f"{facts.coded_width}x{facts.coded_height} SAR {facts.sample_aspect_ratio} "
        f"rot {facts.rotation} -> {facts.width}x{facts.height}, {facts.scan}"
        f"{'/' + facts.field_parity if facts.field_parity else ''}, "
        f"{c.transfer}/{c.primaries}/{c.matrix}{' full' if c.full_range else ''} "
        f"{c.bit_depth}-bit, audio {facts.audio_index}"
    )
