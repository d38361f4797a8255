"""Data appended after the end of a media container (polyglot uploads), found by structure.

A "polyglot" is a valid video with something else glued on: a gzip, a tar with a shell
script, a PDF, an executable. Players ignore the tail, so the file plays, but whoever
downloads the original gets the payload too. ClamAV catches the payloads it has
signatures for; byte signatures for short magics (gzip ``1f 8b``, bzip2 ``BZh``) at any
offset would also match inside compressed video. So this module walks the container's
*top-level structure* instead, and anything after its end is appended data:

* **ISO BMFF** (MP4, MOV, 3GP, M4V): top-level boxes (32-bit size; ``1`` = 64-bit
  largesize follows; ``0`` = to the end of the file) must tile the file.
* **Matroska / WebM**: the EBML header element, then Segment elements (and Void) with a
  known size. A Segment of unknown size (a live recording) runs to the end of the file by
  definition, so nothing can be said: no trailer.
* **RIFF** (AVI, WAV): the ``RIFF`` chunk (size + pad byte), then OpenDML ``RIFF``/
  ``AVIX`` extension chunks.
* Anything else (FLV, MPEG-TS...): not judged, :func:`appended_data` returns None.

Rules: trailing zero bytes only are padding some muxers write, and allowed. A last
element that runs past the end of the file is a truncated file, not a polyglot (the
probe judges whether it still plays). A header that cannot be a top-level element (a
box type that is not a printable four-character code, an unknown box running past the
end, an element ID Matroska does not allow at the top level) starts the appended data.
Fewer than 8 trailing bytes (less than a box header) are treated as a truncated header.
An unknown printable box type that fits in the file is tolerated (vendors add their
own top-level boxes); a payload hidden in a box is *inside* the container and is
ClamAV's to judge.

Cost: only headers are read (one small read per top-level element, at most
``MAX_ELEMENTS``; a fragmented MP4 has two per fragment), plus a scan of the trailer
for a non-zero byte when there is one. Pure Python, no ffmpeg; blocking file I/O (call
it from a thread in async code).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_ELEMENTS = 1_000_000
SNIFF_BYTES = 512
_ZERO_CHUNK = 1 << 20

# Top-level ISO BMFF / QuickTime box types we know (ISO/IEC 14496-12, QuickTime FF).
_BMFF_TOP = {
    b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid",
    b"meta", b"moof", b"mfra", b"sidx", b"ssix", b"prft", b"emsg", b"pdin", b"meco",
    b"junk", b"PICT", b"udta",
}  # fmt: skip

_EBML = 0x1A45DFA3
_SEGMENT = 0x18538067
_VOID = 0xEC
_CRC32 = 0xBF


@dataclass(frozen=True, slots=True)
class Appended:
    """Bytes after the container's end.

    ``offset``: where the container ends (bytes from the start of the file);
    ``length``: bytes from there to the end of the file; ``container``: "MP4", "MOV",
    "3GP", "M4V", "WebM", "Matroska", "AVI" or "WAV"; ``kind``: a guess from the first
    non-zero bytes, one of :data:`KINDS`' keys.
    """

    offset: int
    length: int
    container: str
    kind: str

    @property
    def signature(self) -> str:
        """A ClamAV-style detection name, e.g. ``Reels.Polyglot.AppendedData.Gzip``."""
        return f"Reels.Polyglot.AppendedData.{KINDS[self.kind][0]}"

    @property
    def message(self) -> str:
        """What a person reads: size, where, and what it looks like."""
        return (
            f"{self.length} bytes appended after the end of the {self.container} container"
            f" at offset {self.offset} (looks like {KINDS[self.kind][1]})"
        )


# kind -> (signature suffix, description)
KINDS: dict[str, tuple[str, str]] = {
    "gzip": ("Gzip", "a gzip archive"),
    "bzip2": ("Bzip2", "a bzip2 archive"),
    "xz": ("Xz", "an xz archive"),
    "tar": ("Tar", "a tar archive"),
    "zip": ("ZIP", "a ZIP archive"),
    "rar": ("RAR", "a RAR archive"),
    "7z": ("7z", "a 7z archive"),
    "pdf": ("PDF", "a PDF document"),
    "pe": ("PE", "a Windows executable"),
    "elf": ("ELF", "an ELF executable"),
    "ole2": ("OLE2", "an OLE2 (Office/MSI) document"),
    "chm": ("CHM", "a compiled HTML help file"),
    "rtf": ("RTF", "an RTF document"),
    "html": ("HTML", "HTML"),
    "binhex": ("BinHex", "a BinHex-encoded file"),
    "sis": ("SIS", "a Symbian installer"),
    "script": ("Script", "a script"),
    "text": ("Text", "text"),
    "unknown": ("Unknown", "unrecognised data"),
}


def guess_kind(head: bytes) -> str:
    """What the bytes starting with ``head`` look like (a key of :data:`KINDS`)."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if b"%PDF-" in head[:SNIFF_BYTES]:
        return "pdf"
    if head.startswith(b"MZ"):
        return "pe"
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole2"
    if head.startswith(b"ITSF"):
        return "chm"
    if head.startswith(b"{\\rtf"):
        return "rtf"
    if head[8:12] == b"\x19\x04\x00\x10" or head[:4] == b"\x7a\x1a\x20\x10":
        return "sis"  # EPOC UID3 0x10000419 / Symbian 9 UID1 0x10201A7A
    text = head.lstrip().lower()
    if text.startswith(b"(this file must be converted with binhex"):
        return "binhex"
    if text.startswith(b"#!"):
        return "script"
    if text.startswith(b"<") and any(
        tag in text
        for tag in (b"<!doctype html", b"<html", b"<script", b"<a ", b"<body", b"<iframe",
                    b"<svg", b"<head", b"<meta", b"<img")
    ):  # fmt: skip
        return "html"
    decoded = _utf8_prefix(head)
    if decoded and all(c.isprintable() or c in "\r\n\t\f" for c in decoded):
        return "text"
    return "unknown"


def _utf8_prefix(head: bytes) -> str:
    """``head`` as UTF-8 (a character cut at the end of the sniff is forgiven), or ""."""
    for cut in range(4):
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return ""


def appended_data(path: Path) -> Appended | None:
    """The data after the end of the media container in ``path``, or None.

    None: the container ends at the end of the file (or only zero bytes follow), the
    file is truncated, or the format is not one this module walks (see the module
    docstring). Raises OSError if the file cannot be read.
    """
    with path.open("rb") as f:
        size = f.seek(0, 2)
        head = _pread(f, 0, 64)
        if len(head) >= 8 and _plausible_bmff_start(head):
            found = _walk_bmff(f, size)
        elif head.startswith(b"\x1a\x45\xdf\xa3"):
            found = _walk_matroska(f, size)
        elif head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE"):
            found = _walk_riff(f, size, "AVI" if head[8:12] == b"AVI " else "WAV")
        else:
            return None
        if found is None:
            return None
        end, container = found
        if end >= size:
            return None
        first = _first_non_zero(f, end, size)
        if first is None:
            return None  # zero padding
        sniff = _pread(f, end, SNIFF_BYTES)
        kind = guess_kind(sniff)
        if kind == "unknown" and first > end:
            kind = guess_kind(_pread(f, first, SNIFF_BYTES))
        return Appended(offset=end, length=size - end, container=container, kind=kind)


# ------------------------------------------------------------------ ISO BMFF


def _is_fourcc(t: bytes) -> bool:
    return len(t) == 4 and all(0x20 <= b <= 0x7E or b == 0xA9 for b in t)


def _plausible_bmff_start(head: bytes) -> bool:
    return head[4:8] in _BMFF_TOP


def _bmff_brand(f: BinaryIO) -> str:
    head = _pread(f, 0, 12)
    if head[4:8] != b"ftyp":
        return "MOV"  # old QuickTime files start with wide/mdat/moov
    brand = head[8:12]
    if brand == b"qt  ":
        return "MOV"
    if brand.startswith(b"3g"):
        return "3GP"
    if brand.startswith(b"M4V"):
        return "M4V"
    return "MP4"


def _walk_bmff(f: BinaryIO, size: int) -> tuple[int, str] | None:
    """(end of the last whole box, container name); None if truncated or to-EOF."""
    container = _bmff_brand(f)
    pos = 0
    for _ in range(MAX_ELEMENTS):
        if size - pos < 8:
            return None  # at the end, or a box header cut short (truncated)
        header = _pread(f, pos, 16)
        box_size, box_type = struct.unpack(">I4s", header[:8])
        header_len = 8
        if box_size == 1:
            if len(header) < 16:
                return None  # truncated largesize
            box_size = struct.unpack(">Q", header[8:16])[0]
            header_len = 16
        if not _is_fourcc(box_type):
            return pos, container
        if box_size == 0:
            # "extends to the end of the file": only trust a box we know.
            return None if box_type in _BMFF_TOP else (pos, container)
        if box_size < header_len:
            return pos, container
        if pos + box_size > size:
            # A known box cut short is a truncated file; an unknown "box" claiming
            # more than the file holds is the start of something else.
            return None if box_type in _BMFF_TOP else (pos, container)
        pos += box_size
        if pos == size:
            return None
    return pos, container


# ------------------------------------------------------------------ Matroska


def _vint(data: bytes, at: int, *, keep_marker: bool) -> tuple[int, int, bool] | None:
    """(value, length, all-ones) of the EBML variable-size integer at ``data[at:]``."""
    if at >= len(data) or data[at] == 0:
        return None
    first = data[at]
    length = 8 - first.bit_length() + 1
    if at + length > len(data):
        return None
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    for b in data[at + 1 : at + length]:
        value = (value << 8) | b
    ones = (1 << (7 * length)) - 1
    return value, length, (not keep_marker and value == ones)


def _walk_matroska(f: BinaryIO, size: int) -> tuple[int, str] | None:
    doctype = b"webm" if b"webm" in _pread(f, 0, 64) else b"matroska"
    container = "WebM" if doctype == b"webm" else "Matroska"
    pos = 0
    for _ in range(MAX_ELEMENTS):
        if pos >= size:
            return None
        header = _pread(f, pos, 12)
        element = _vint(header, 0, keep_marker=True)
        if element is None or element[1] > 4:
            return pos, container
        element_id, id_len, _ = element
        if element_id not in (_EBML, _SEGMENT, _VOID, _CRC32):
            return pos, container
        length = _vint(header, id_len, keep_marker=False)
        if length is None:
            return None if len(header) < 12 else (pos, container)
        data_size, size_len, unknown = length
        if unknown:
            # Live recording: the Segment runs to the end of the file by definition.
            return None
        end = pos + id_len + size_len + data_size
        if end > size:
            return None  # truncated
        pos = end
    return pos, container


# ------------------------------------------------------------------ RIFF


def _walk_riff(f: BinaryIO, size: int, container: str) -> tuple[int, str] | None:
    pos = 0
    for _ in range(MAX_ELEMENTS):
        if pos >= size:
            return None
        header = _pread(f, pos, 12)
        if pos > 0 and not (header[:4] == b"RIFF" and header[8:12] == b"AVIX"):
            return pos, container
        if len(header) < 8:
            return None
        chunk = struct.unpack("<I", header[4:8])[0]
        end = pos + 8 + chunk + (chunk & 1)
        if end > size:
            # The pad byte after an odd-sized last chunk is sometimes left out.
            return None
        pos = end
    return pos, container


# ------------------------------------------------------------------ bytes


def _pread(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _first_non_zero(f: BinaryIO, start: int, size: int) -> int | None:
    """Offset of the first non-zero byte in ``[start, size)``, or None."""
    pos = start
    f.seek(pos)
    while pos < size:
        chunk = f.read(_ZERO_CHUNK)
        if not chunk:
            return None
        stripped = chunk.lstrip(b"\x00")
        if stripped:
            return pos + len(chunk) - len(stripped)
        pos += len(chunk)
    return None
