"""One normaliser for every text people type: titles, descriptions, hashtags, comments,
and (later) chat messages.

Every text a person typed goes through :func:`normalise_text` (or
:func:`normalise_hashtags`) before it is checked against a limit or stored, so the same
rules hold whichever door it came in by (gRPC, JSON through Envoy, tus headers). A bad
text raises :class:`TextError`, an ``INVALID_ARGUMENT`` whose BadRequest violation names
the field: never a 5xx, never a string the database refuses.

The rules, in the order they apply (docs/DECISIONS.md, "Text people type"):

1. **NFC.** Canonically equivalent spellings (``é`` as one code point or as ``e`` +
   U+0301) become one. Not NFKC: that would rewrite ``x²``, ``①``, fullwidth forms and
   Hangul compatibility jamo, which people type on purpose.
2. **Refused** (the request fails, naming the field and the code point): C0/C1 control
   characters other than tab and line breaks (NUL, ESC, DEL, U+0080-U+009F...),
   surrogates, noncharacters (U+FDD0-U+FDEF, U+xxFFFE/F), the bidi embeddings and
   overrides U+202A-U+202E (the "Trojan Source" / ``invoice\u202egpj.exe`` spoofing tool;
   UAX #9 recommends isolates instead), bidi isolates U+2066-U+2069 that are not
   balanced within their line, and more than :data:`MAX_MARKS` combining marks on one
   character ("Zalgo" text that paints over the lines around it). These mean a broken
   client or an attack; changing them silently could hide what was sent.
3. **Normalised, harmless:** CR LF, CR, NEL, U+2028, U+2029, VT and FF become a line
   break where a field allows line breaks and a space where it does not; a tab is a
   space; trailing spaces of a line go; more than one blank line in a row becomes one;
   in single-line fields, runs of ASCII spaces become one; leading and trailing
   whitespace, zero-width spaces and word joiners go.
4. **Stripped, harmless:** U+FEFF (a byte-order mark pasted with the text), the
   deprecated format characters U+206A-U+206F, the interlinear annotation characters
   U+FFF9-U+FFFB, and tag characters (U+E0000-U+E007F) that are not part of an emoji
   tag sequence (the flag of Scotland keeps its tags; "ASCII smuggling" of invisible
   instructions loses them).
5. **Empty:** a text with no visible character is empty: only whitespace, default
   ignorable code points (ZWSP, ZWJ, ZWNJ, variation selectors, BOM, the Hangul fillers
   U+115F/U+1160/U+3164/U+FFA0...), combining marks with nothing to sit on, or the
   blank-looking U+2800 BRAILLE PATTERN BLANK and U+1D159 MUSICAL SYMBOL NULL NOTEHEAD.
   Code points this Python's Unicode database does not know yet (Cn) count as visible:
   newer emoji are exactly that.
6. **Length** is counted in code points of the normalised text: Python's ``len``,
   PostgreSQL's ``char_length``, JavaScript's ``[...text].length``. Not grapheme
   clusters: a cluster has no upper size (Zalgo), so a limit in clusters would not bound
   storage or the tus ``Upload-Metadata`` header, and the 2,200-character description
   limit would stop meaning at most 8,800 UTF-8 bytes.

Hashtags (:func:`hashtag_key`) are compared and stored as NFC + full casefolding (the
canonical caseless match of Unicode §3.13): ``#Café``, ``#café`` and ``#Cafe\u0301`` are
one tag, stored as ``café``. A tag is 1-:data:`HASHTAG_MAX_CHARS` letters, combining
marks, digits (any script) or ``_``, with a few word-internal marks (``·`` ``・`` ``׳``
``״`` ``་``) between letters and ZWNJ/ZWJ where they change the drawing
(:func:`_joiner_kept`). Everything else that is visible separates tags: whitespace, the
hash signs, punctuation of every script (``!`` ``.`` ``;`` ``،`` ``؛`` ``。`` ``।``...),
symbols and emoji (:func:`split_hashtags`); default-ignorable characters are removed
(:func:`clean_hashtag`), and a tag left empty is dropped, as a bare ``#`` is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from reels import errors

# More combining marks than this on one base character are refused (Zalgo). Real
# scripts stay far below: Vietnamese 2, Biblical Hebrew ~5, Tibetan stacks ~6.
MAX_MARKS = 10
HASHTAG_MAX_CHARS = 50

# Line breaks of every kind (after CR LF has become LF): NEL, LS, PS, VT, FF.
_BREAKS = {"\r": "\n", "\x85": "\n", "\u2028": "\n", "\u2029": "\n", "\x0b": "\n", "\x0c": "\n"}
_ALLOWED_CONTROLS = frozenset("\t\n\r\x0b\x0c\x85")
_LINE_ENDS = frozenset("\n\r\x0b\x0c\x85\u2028\u2029")

_BIDI_EMBEDDINGS = frozenset("\u202a\u202b\u202c\u202d\u202e")
_BIDI_OPEN = frozenset("\u2066\u2067\u2068")  # LRI, RLI, FSI
_BIDI_CLOSE = "\u2069"  # PDI

# Removed wherever they appear (rule 4); tag characters are handled separately.
_STRIPPED = frozenset("\ufeff\u206a\u206b\u206c\u206d\u206e\u206f\ufff9\ufffa\ufffb")
_TAGS = range(0xE0000, 0xE0080)
_TAG_BASE = "\U0001f3f4"  # WAVING BLACK FLAG: the one base of emoji tag sequences
_CANCEL_TAG = "\U000e007f"

# Trimmed from both ends, besides str.strip()'s whitespace.
_EDGE_BLANKS = "\u200b\u2060\u180e"

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15): code
# points a renderer shows as nothing. Python's unicodedata does not expose the property.
_DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Not default-ignorable, but drawn as nothing by every common font.
_BLANK_LOOKING = frozenset("\u2800\U0001d159")

# Hashtags: hash signs, joiners and word-internal characters (everything else that
# is not part of a word separates tags: :func:`_tag_class`).
_HASH_SIGNS = "#\uff03"  # '#' and FULLWIDTH NUMBER SIGN (Japanese and Chinese IMEs)
_HASHTAG_JOINERS = frozenset("\u200c\u200d")  # ZWNJ (Persian, Indic), ZWJ
_HASHTAG_INNER = frozenset("\u00b7\u30fb\u05f3\u05f4\u0f0b")


class TextError(errors.InvalidArgument):
    """A text field a person typed is not acceptable: INVALID_ARGUMENT naming ``field``.

    ``message`` reads "<label> <problem>" ("comment is empty"); the BadRequest violation
    is ``(field, problem)``.
    """

    def __init__(self, field: str, label: str, problem: str) -> None:
        super().__init__(f"{label} {problem}", [(field, problem)])
        self.field = field
        self.problem = problem


def describe(ch: str) -> str:
    """``U+0000 NULL``: how an error names a code point (never the raw character)."""
    name = unicodedata.name(ch, "") or _CONTROL_NAMES.get(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


_CONTROL_NAMES = {
    "\x00": "NULL",
    "\x07": "BELL",
    "\x08": "BACKSPACE",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
}


def shown(value: str, limit: int = 40) -> str:
    """``value`` safe to echo in an error message: every character that is not visible
    (controls, format and bidi characters, fillers, separators, a mark with no base) as a
    ``\\uXXXX`` escape; at most ``limit`` characters."""
    out: list[str] = []
    base = False
    for ch in value[:limit]:
        mark = unicodedata.category(ch)[0] == "M" and not _is_default_ignorable(ord(ch))
        if ch == " " or is_visible(ch) or (mark and base):
            out.append(ch)
            base = ch != " "
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
            base = False
    return "".join(out) + ("…" if len(value) > limit else "")


def _is_default_ignorable(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _DEFAULT_IGNORABLE)


def is_visible(ch: str) -> bool:
    """Whether ``ch`` on its own puts ink on the screen (rule 5)."""
    cat = unicodedata.category(ch)
    if cat[0] in "MZ" or cat in ("Cc", "Cs"):
        return False
    return ch not in _BLANK_LOOKING and not _is_default_ignorable(ord(ch))


def is_blank(value: str) -> bool:
    """True when ``value`` has no visible character (it counts as empty)."""
    return not any(is_visible(ch) for ch in value)


def _is_noncharacter(cp: int) -> bool:
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def _refused(value: str) -> str | None:
    """What rule 2 refuses in ``value`` (a phrase naming the code point), if anything."""
    marks = 0
    isolates = 0
    for i, ch in enumerate(value):
        cat = unicodedata.category(ch)
        why = None
        if cat == "Cc" and ch not in _ALLOWED_CONTROLS:
            why = "a control character"
        elif cat == "Cs":
            why = "a lone surrogate, which is not Unicode text"
        elif _is_noncharacter(ord(ch)):
            why = "a Unicode noncharacter"
        elif ch in _BIDI_EMBEDDINGS:
            why = "a bidirectional embedding or override (use an isolate, U+2066-U+2069)"
        elif ch in _BIDI_OPEN:
            isolates += 1
        elif ch == _BIDI_CLOSE:
            if isolates == 0:
                why = "a bidirectional isolate closed without being opened"
            isolates -= 1
        elif ch in _LINE_ENDS and isolates:
            why = "a line break inside an unclosed bidirectional isolate"
        if cat[0] == "M":
            marks += 1
            if marks > MAX_MARKS:
                why = f"more than {MAX_MARKS} combining marks on one character"
        else:
            marks = 0
        if why:
            return f"contains {why}: {describe(ch)} at character {i + 1}"
    if isolates:
        return "contains a bidirectional isolate that is never closed (missing U+2069)"
    return None


def _strip_format(value: str) -> str:
    """Rule 4: drop BOMs, deprecated format characters and stray tag characters."""
    if not any(ch in _STRIPPED or ord(ch) in _TAGS for ch in value):
        return value
    out: list[str] = []
    in_tag_sequence = False
    for ch in value:
        if ch in _STRIPPED:
            continue
        cp = ord(ch)
        if cp in _TAGS:
            # Kept only inside U+1F3F4 <tag spec chars E0020-E007E>... U+E007F.
            if in_tag_sequence and 0xE0020 <= cp <= 0xE007E:
                out.append(ch)
                continue
            if in_tag_sequence and ch == _CANCEL_TAG:
                out.append(ch)
                in_tag_sequence = False
                continue
            continue
        if in_tag_sequence:  # an unterminated sequence: drop the tags it collected
            while out and ord(out[-1]) in _TAGS:
                out.pop()
        in_tag_sequence = ch == _TAG_BASE
        out.append(ch)
    if in_tag_sequence:
        while out and ord(out[-1]) in _TAGS:
            out.pop()
    return "".join(out)


_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACE_RUNS = re.compile(r" {2,}")


def _lines(value: str, multiline: bool) -> str:
    """Rule 3: one kind of line break (or none), tabs as spaces, no stray blank lines."""
    value = value.replace("\r\n", "\n")
    value = "".join(_BREAKS.get(ch, ch) for ch in value) if _needs_break_map(value) else value
    value = value.replace("\t", " ")
    if multiline:
        value = _TRAILING_SPACE.sub("\n", value)
        return _BLANK_LINES.sub("\n\n", value)
    return _SPACE_RUNS.sub(" ", value.replace("\n", " "))


def _needs_break_map(value: str) -> bool:
    return any(ch in _BREAKS for ch in value)


def _trim(value: str) -> str:
    previous = None
    while previous != value:
        previous = value
        value = value.strip().strip(_EDGE_BLANKS)
    return value


def normalise_text(
    value: str,
    *,
    field: str,
    max_chars: int,
    allow_newlines: bool = False,
    required: bool = True,
    label: str | None = None,
    empty_message: str | None = None,
) -> str:
    """``value`` as stored, or :class:`TextError` naming ``field``.

    ``label`` is what a person calls the field ("comment"; default: ``field``);
    ``allow_newlines`` keeps line breaks (descriptions, comments) instead of turning them
    into spaces (titles, names); ``required`` makes an empty or invisible-only text an
    error ("<label> is empty"), otherwise it is stored as "". ``max_chars`` counts code
    points after normalising (module docstring, rule 6).
    """
    name = label or field
    # Cheap bound before any work on a huge input: normalising never shrinks a text by
    # more than this (NFC recomposes at most 4 code points into one; blanks are trimmed).
    if len(value) > 4 * max_chars + 1024:
        raise TextError(field, name, f"is longer than {max_chars} characters")
    text = unicodedata.normalize("NFC", value)
    problem = _refused(text)
    if problem:
        raise TextError(field, name, problem)
    text = _trim(_lines(_strip_format(text), allow_newlines))
    if is_blank(text):
        if required:
            if empty_message:
                raise TextError(field, name, empty_message)
            raise TextError(field, name, "is empty")
        return ""
    if len(text) > max_chars:
        raise TextError(field, name, f"is longer than {max_chars} characters (got {len(text)})")
    return text


def _continues(ch: str) -> bool:
    """Whether ``ch`` belongs to the character before it (a cut must not fall before it):
    a combining mark, ZWJ, a variation selector or tag, an emoji skin tone, a Hangul
    vowel or final jamo."""
    cp = ord(ch)
    return (
        _is_mark(ch)
        or ch == "\u200d"
        or _is_default_ignorable(cp)
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0x1160 <= cp <= 0x11FF
        or 0xD7B0 <= cp <= 0xD7FF
    )


def truncate(value: str, max_chars: int) -> str:
    """A normalised ``value`` cut to at most ``max_chars`` code points, never between a
    character and what belongs to it (marks, ZWJ sequences, variation selectors), with
    no bidirectional isolate left open, trimmed again: a text that passes
    :func:`normalise_text` with the same limit (a title made from a long file name)."""
    if len(value) <= max_chars:
        return value
    cut = max_chars
    while cut > 0 and (_continues(value[cut]) or value[cut - 1] == "\u200d"):
        cut -= 1
    kept: list[str] = []
    opened: list[int] = []
    for ch in value[:cut]:
        if ch in _BIDI_OPEN:
            opened.append(len(kept))
        elif ch == _BIDI_CLOSE and opened:
            opened.pop()
        kept.append(ch)
    for index in reversed(opened):  # isolates the cut left open: drop their openers
        del kept[index]
    return _trim("".join(kept))


# -- hashtags -------------------------------------------------------------------------

# How each character of a hashtags text is read (:func:`_tag_class`).
_WORD, _JOINER, _INNER, _IGNORABLE, _KEEP, _SEP = range(6)
_ZWNJ, _ZWJ = "\u200c", "\u200d"
_VIRAMA = 9  # canonical combining class of viramas (Devanagari U+094D, Bengali U+09CD...)
# Scripts whose letters join cursively, where ZWNJ between two letters changes how the
# word is drawn (Persian ``می\u200cخواهم``): Unicode's Joining_Type D/L/R letters live in
# these; Python's unicodedata does not expose Joining_Type, the names tell the script.
_JOINING_SCRIPTS = (
    "ARABIC",
    "SYRIAC",
    "NKO",
    "MONGOLIAN",
    "MANDAIC",
    "ADLAM",
    "HANIFI ROHINGYA",
    "SOGDIAN",
    "OLD UYGHUR",
    "MANICHAEAN",
    "PSALTER PAHLAVI",
    "CHORASMIAN",
    "PHAGS-PA",
)


def _tag_class(ch: str) -> int:
    """How a hashtags text reads ``ch``: part of a tag (a letter, mark, digit or ``_``),
    a joiner or a word-internal mark, ignorable (dropped), refused (kept so the check
    names it) or a separator: whitespace, ``#``, any punctuation (P*) or symbol (S*,
    emoji included), private-use and unassigned code points (newer emoji)."""
    if ch in _HASH_SIGNS or ch in _ALLOWED_CONTROLS:
        return _SEP
    cat = unicodedata.category(ch)
    cp = ord(ch)
    if cat in ("Cc", "Cs") or _is_noncharacter(cp) or ch in _BIDI_EMBEDDINGS:
        return _KEEP
    if ch in _HASHTAG_JOINERS:
        return _JOINER
    if ch in _HASHTAG_INNER:
        return _INNER
    if ch in _STRIPPED or _is_default_ignorable(cp):
        return _IGNORABLE
    if cat[0] in "LMN" or ch == "_":
        return _WORD
    return _SEP


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "M"


def _joins(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "L" and unicodedata.name(ch, "").startswith(
        _JOINING_SCRIPTS
    )


def _joiner_kept(joiner: str, before: list[str], after: list[str]) -> bool:
    """Whether ZWNJ/ZWJ inside a tag can change how it is drawn, so it is part of the tag.

    RFC 5892's CONTEXTJ rules (IDNA), less the Joining_Type table: next to a virama
    (Indic half forms, explicit halant; Bengali's ZWJ before the virama), or, for ZWNJ,
    between two letters of a cursive script (Persian). Anywhere else a joiner changes
    nothing on screen, so it is dropped: ``#a\u200db`` is ``#ab``.
    """
    if not before or not after or _tag_class(after[0]) != _WORD:
        return False
    prev, nxt = before[-1], after[0]
    if prev in _HASHTAG_JOINERS:
        return False
    if unicodedata.combining(prev) == _VIRAMA or unicodedata.combining(nxt) == _VIRAMA:
        return True
    if joiner != _ZWNJ:
        return False
    base = next((ch for ch in reversed(before) if not _is_mark(ch)), "")
    follower = next((ch for ch in after if not _is_mark(ch)), "")
    return bool(base and follower) and _joins(base) and _joins(follower)


def split_hashtags(raw: str | Iterable[str]) -> list[str]:
    """The raw tags of ``raw``, split at separators (:func:`_tag_class`): ``"#a, b c"``,
    ``"#a#b"``, ``"＃a、b"``, ``"#東京。#大阪"``, ``"#wow!"`` and ``["#a", "b"]`` alike.
    A list element is read as text too (``["#a #b"]`` is two tags).

    Only splits: a tag keeps its ignorable characters (cleaned by
    :func:`normalise_hashtags`) and any refused one (so the check can name it). Items
    with nothing but ignorables (a bare ``#``, blanks, ``"\u200b"``) are dropped.
    """
    texts = [raw] if isinstance(raw, str) else list(raw)
    out: list[str] = []
    for value in texts:
        current: list[str] = []
        for ch in unicodedata.normalize("NFC", value) + " ":
            if _tag_class(ch) != _SEP:
                current.append(ch)
                continue
            if any(_tag_class(c) != _IGNORABLE for c in current):
                out.append("".join(current))
            current = []
    return out


def clean_hashtag(item: str) -> list[str]:
    """The tags in one raw item of :func:`split_hashtags`, cleaned: default-ignorable
    characters (VS16 of emoji keyboards, LRM/RLM of RTL input, BOM, soft hyphen, Hangul
    fillers, stray tag characters...) removed; a joiner kept only where it changes the
    drawing (:func:`_joiner_kept`); combining marks with nothing to sit on dropped; a
    word-internal mark (``·`` ``・`` ``׳`` ``״`` ``་``) kept only between two letters,
    elsewhere it separates. Possibly several tags (``"a·"`` gives ``a``), possibly none.
    """
    chars = [ch for ch in unicodedata.normalize("NFC", item) if _tag_class(ch) != _IGNORABLE]
    chars = list(unicodedata.normalize("NFC", "".join(chars)))
    tags: list[str] = []
    current: list[str] = []
    for i, ch in enumerate(chars):
        kind = _tag_class(ch)
        rest = chars[i + 1 :]
        if kind in (_WORD, _KEEP):
            if current or not _is_mark(ch):  # a mark needs a base inside the tag
                current.append(ch)
            continue
        if kind == _JOINER:
            if _joiner_kept(ch, current, rest):
                current.append(ch)
            continue
        # A word-internal mark between two letters, else a separator (_INNER, _SEP).
        if kind == _INNER and current and rest and _tag_class(rest[0]) == _WORD:
            if not _is_mark(rest[0]):
                current.append(ch)
                continue
        if current:
            tags.append("".join(current))
        current = []
    if current:
        tags.append("".join(current))
    return tags


def hashtag_key(tag: str) -> str:
    """The form a hashtag is compared and stored in: NFC of the full casefold of its
    canonical decomposition (Unicode's canonical caseless match), without leading ``#``.

    ``tag`` is one clean tag (:func:`clean_hashtag`); this only folds it."""
    tag = unicodedata.normalize("NFC", tag).strip().lstrip(_HASH_SIGNS).strip()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", tag).casefold())


def _hashtag_problem(key: str) -> str | None:
    if not key:
        return "is empty"
    if len(key) > HASHTAG_MAX_CHARS:
        return f"is longer than {HASHTAG_MAX_CHARS} characters"
    for i, ch in enumerate(key):
        kind = _tag_class(ch)
        if kind == _WORD and (i > 0 or not _is_mark(ch)):
            continue
        if kind in (_JOINER, _INNER) and 0 < i < len(key) - 1:
            continue
        return f"has {describe(ch)}"
    return None


def normalise_hashtags(
    raw: str | Iterable[str], *, max_count: int, field: str = "hashtags"
) -> list[str]:
    """The distinct hashtag keys of ``raw``, in first-seen order, or :class:`TextError`
    listing every bad tag (shown escaped).

    Punctuation and symbols of any script end a tag (``#wow!``, ``#東京。#大阪``,
    ``#مرحبا، #عالم``); ignorable characters are removed (``#love\ufe0f``); a tag that
    is empty after that is dropped, as a bare ``#`` is. Refused characters (rule 2) and
    tags over :data:`HASHTAG_MAX_CHARS` fail the request.
    """
    texts = [raw] if isinstance(raw, str) else list(raw)
    # Cheap bound before any work: far more than max_count tags at their longest with
    # separators, emoji and spaces between them could take.
    most = max_count * 8 * HASHTAG_MAX_CHARS + 1024
    if sum(len(t) for t in texts) > most:
        raise TextError(field, "hashtags", f"are longer than {most} characters in all")
    bad: list[str] = []
    keys: dict[str, None] = {}
    for item in split_hashtags(texts):
        problem = _refused(item)
        if problem:
            bad.append(f"'{shown(item)}' {problem}")
            continue
        for tag in clean_hashtag(item):
            key = hashtag_key(tag)
            problem = _hashtag_problem(key)
            if problem:
                bad.append(f"'{shown(tag)}' {problem}")
            else:
                keys.setdefault(key)
    if bad:
        raise TextError(
            field,
            "hashtags",
            f"must be 1-{HASHTAG_MAX_CHARS} letters, marks, digits or '_' (any script): "
            + "; ".join(bad[:5])
            + (f"; and {len(bad) - 5} more" if len(bad) > 5 else ""),
        )
    if len(keys) > max_count:
        raise TextError(field, "hashtags", f"must be at most {max_count} (got {len(keys)})")
    return list(keys)
