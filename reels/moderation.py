"""Text moderation: the one step every typed text passes after ``reels.text`` normalised
it (titles, descriptions, hashtags, comments, chat messages, live stream titles,
descriptions and tags).

Two stages, always in this order (docs/DECISIONS.md, "Text moderation (issue 13)"):

1. **The blocklist** (:class:`Blocklist`), pure and synchronous, so the validation
   functions that already normalise each text (``svc_upload/limits.py``,
   ``svc_stream/engagement/store.py``, ``svc_chat/chat/validation.py``,
   ``svc_chat/streams/validation.py``) call it right after :func:`reels.text.normalise_text`.
   The list is the file ``REELS_TEXT_BLOCKLIST`` (default ``safety/text/blocklist.txt``;
   format in that file), read once per process (:func:`default`).
2. **A classifier** (:class:`TextClassifier`), optional: any object with
   ``async def check(field, text) -> Refusal | None``, made by the factory that
   ``REELS_TEXT_CLASSIFIER`` names as ``package.module:factory`` (empty: none). It runs
   only on texts the blocklist let through, where the call site is async
   (:meth:`TextModerator.classify`).

What the blocklist matches. A text and every listed term are folded the same way, one
character at a time (:func:`fold`), so a match can be shown as the user typed it:

- **NFKC**: fullwidth ``ｆｕｃｋ`` and mathematical ``𝐟𝐮𝐜𝐤`` are ``fuck`` (UAX #15).
- **Invisible characters** go: Unicode's Default_Ignorable_Code_Point (ZWSP, ZWNJ, ZWJ,
  word joiner, soft hyphen, BOM, variation selectors...) and other format characters
  (Cf), so ``fu\\u200bck`` is ``fuck`` (UTS #39 §3.1 ignores them for confusables too).
- **Case**: full casefolding (Unicode §3.13; ``ß`` is ``ss``).
- **Accents**: NFKD, then every combining mark dropped (``fück`` is ``fuck``), with a few
  letters NFKD does not decompose (``ł ø đ ı``...).
- **Look-alike letters** (homoglyphs) of Cyrillic and Greek become the Latin letter
  they are drawn as (``а е о р с х і ѕ`` and ``Α Β Ε Η Κ Μ Ν Ο Ρ Τ Χ``...; a subset of
  UTS #39's confusables.txt, the letters spoofers use), and **small capitals**
  (``ʀᴇᴇʟꜱ`` is ``reels``): every character Unicode names "LATIN LETTER SMALL CAPITAL
  X" (:func:`_small_capitals`; no confusables table ships with Python or the project).

A term then matches when its words appear as **whole words** of the folded text
(nothing before or after them that is a letter or digit), which is what avoids the
Scunthorpe problem: ``ass`` does not refuse "classic", "assassin" or "glass", ``cock``
not "cocktail", ``sex`` not "Essex". Within a word:

- **leetspeak**: each letter also matches its usual digits and symbols (``0`` o,
  ``1`` i or l, ``3`` e, ``4`` a, ``5`` s, ``7`` t, ``8`` b, ``9``/``6`` g, ``2`` z,
  ``@`` a, ``$`` s, ``!`` i, ``|`` i or l, ``+`` t, ``€`` e): :data:`LEET`;
- **repeated letters**: each letter of the term may repeat (``fuuuuck``), but a
  double letter of the term stays at least double, so ``ass`` does not refuse "as";
- **separators between letters**: the whole word spelt out with a space, ``.``,
  ``_``, ``-``, ``*``... between every two letters (``f u c k``, ``f.u.c.k``,
  ``f_u_c_k``): :data:`SEPARATORS`.

**Inflections.** The last word of a term may carry a regular English ending
(:data:`INFLECTIONS`: ``-s -es -ed -ing -ings -in'``; ``-d`` after a final ``e``, which
``-ing`` drops; ``-ies -ied`` for a final ``y``), its last letter doubled or not:
``fuck`` refuses "fucks", "fucked", "fucking", "fuckin'"; ``shit`` "shitting".
Agent and adjective endings (``-er``, ``-y``) are not added: ``cock`` must not refuse
"cocker spaniel" or "cocky"; list such forms. A possessive (``term's``) is the term
followed by a non-letter, a whole word already.

**Glued into a longer word** (hashtags, compounds: ``#termlover``, ``xxtermxx``). A
whole-word rule cannot see these, and plain substring matching is the Scunthorpe
problem. The rule: a term may be glued to letters only where it says so or where it is
too long to be an accident:

- ``*`` at the start and/or end of a listed term: ``*fuck*`` matches inside any word
  ("motherfuckers", "#fuckthis"), ``nigger*`` only at the start of a word
  ("niggerlover", not "sniggers"), ``*fucker`` only at the end. The list author marks
  the terms that no innocent word contains at that side.
- a one-word term of at least :data:`GLUED_MIN_LETTERS` (8) folded letters and digits
  is glued on both sides without a mark (``reelsblockedterm`` refuses
  "xxreelsblockedtermxx"). The known Scunthorpe victims are shorter terms inside
  innocent words ("cunt" in Scunthorpe, "penis" in Penistone, "rapist" in therapist,
  "niggers" in sniggers: 4 to 7 letters).
- a term in double quotes (``"cum"``) is exact: whole words only, no inflection, never
  glued ("cumin", "Cumming" pass), also for a long term (``"slaughter"`` does not
  refuse "manslaughter").

The spelt-out form (``f.u.c.k``) always needs boundaries and takes no ending.

**Split words.** A word of at least :data:`GLUED_MIN_LETTERS` letters (a one-word term,
or a word of a phrase) also matches with up to :data:`SPLIT_GAP_MAX` separators
(anything but letters, digits and leetspeak symbols) between any two of its letters:
``reels blocked term``, ``REELS_BLOCKED_TERM``, ``R33LS-BL0CK3D-T3RM``, ``kill your
self``; its glue and boundaries stay as above. A shorter word is never split: "wet back"
is not ``wetback*``, "of Uckfield" not ``*fuck*``, "a glass hole" not ``*asshole*``;
the list names a short split form as a phrase (``kill ur self`` matches "kill urself").
A final ``-lf`` also takes ``-lves`` (``kill yourself``: "kill yourselves").

Matching time is linear in the text's length: runs of one character are cut to
:data:`RUN_MAX` (3) before matching, and a letter of a term repeats at most
:data:`REPEAT_MAX` (8) times (a refusal still shows the whole run as typed). Unbounded
repeats of overlapping leetspeak classes took seconds on 5,000 characters ("k" and
then "1"s, "@@@..."; :func:`_compact`).

A phrase of several words matches its words in order with anything but letters and
digits between them, or nothing (``kill   yourself!``, ``kill-yourself``,
``#killyourself``), and its first and last words need word boundaries (``*`` marks and
inflections apply at its ends; a phrase is never glued by length: "skill yourself"
passes). A quoted phrase needs a non-letter between its words.

Scripts written without spaces (Chinese, Japanese, Thai, Lao, Khmer, Myanmar,
Tibetan) have no word boundaries to match against: a term whose first (last) character
is of such a script matches without a boundary on that side, i.e. as a substring. The
list author picks such terms long enough not to refuse innocent words. Latin terms in
such text still need a boundary against Latin letters and digits only
(``fuck東京`` is refused).

Errors: a refused text raises :class:`ModerationError`, an ``INVALID_ARGUMENT`` (a
:class:`reels.text.TextError`) whose BadRequest violation names the field the client
used; its message reads ``title: contains a blocked term ("F.U.C.K"); edit it and try
again``. A broken list or classifier setting raises :class:`reels.config.SettingError`
on first use. A classifier that raises fails the request (INTERNAL): one that wants to
fail open catches its own errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Protocol

from reels import config, errors, text

# -- folding --------------------------------------------------------------------------

# Capital letters whose small form looks different (Greek Η is H, its η is n): mapped
# before casefolding. From UTS #39 confusables.txt, letters only.
_UPPER_LOOKALIKES = {
    # Greek
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m",
    "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    # Cyrillic
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p",
    "С": "c", "Т": "t", "Х": "x", "У": "y", "І": "i", "Ј": "j", "Ѕ": "s", "Ү": "y",
}  # fmt: skip
# Small letters (after casefolding and dropping marks) drawn like a Latin letter, and
# Latin letters NFKD does not decompose.
_LOWER_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "г": "r", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ь": "b", "і": "i",
    "ј": "j", "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ү": "y", "ӏ": "l",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u",
    "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    # Latin without a decomposition
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ɑ": "a", "ɡ": "g",
    "ɩ": "i", "æ": "ae", "œ": "oe",
    # Greek small capitals drawn like Latin letters (ᴦ as in Г, ᴨ as in п)
    "ᴦ": "r", "ᴨ": "n", "ᴩ": "p",
}  # fmt: skip
# Small capital letters (IPA, phonetic extensions, Latin Extended-D/E/G: ʀ ᴇ ʟ ʙ ᴏ ᴄ ᴋ
# ᴅ ᴛ ᴍ ꜱ ꜰ ...) are drawn as their capital letter: every character Unicode names "LATIN
# LETTER SMALL CAPITAL X" (also "BARRED X", "X WITH ...") is x. Turned, reversed and
# inverted forms are not (they look like no letter). NFKC already maps the modifier
# forms (ᶦ ᶫ ᶰ) to these.
_SMALL_CAPITAL_NAME = re.compile(
    r"LATIN (?:LETTER SMALL CAPITAL|SMALL CAPITAL LETTER) (?:BARRED )?([A-Z]{1,2})(?: WITH .*)?"
)
_SMALL_CAPITAL_BLOCKS = ((0x0250, 0x02B0), (0x1D00, 0x1DC0), (0x2C60, 0x2C80),
                         (0xA720, 0xA800), (0xAB30, 0xAB70), (0x1DF00, 0x1E000))  # fmt: skip


def _small_capitals() -> dict[str, str]:
    table: dict[str, str] = {}
    for start, end in _SMALL_CAPITAL_BLOCKS:
        for cp in range(start, end):
            found = _SMALL_CAPITAL_NAME.fullmatch(unicodedata.name(chr(cp), ""))
            if found:
                table[chr(cp)] = found.group(1).lower()
    return table


_LOWER_LOOKALIKES.update(_small_capitals())


def _ignorable(ch: str) -> bool:
    return text._is_default_ignorable(ord(ch)) or unicodedata.category(ch) == "Cf"


@functools.lru_cache(maxsize=8192)
def fold(ch: str) -> str:
    """What one character of a text is matched as (module docstring): NFKC, invisible
    characters dropped, look-alike capitals mapped, casefolded, marks dropped, look-alike
    small letters mapped. Possibly several characters (``ß``), possibly none (ZWSP)."""
    out: list[str] = []
    for c in unicodedata.normalize("NFKC", ch):
        if _ignorable(c):
            continue
        c = _UPPER_LOOKALIKES.get(c, c)
        for d in unicodedata.normalize("NFKD", c.casefold()):
            if unicodedata.category(d)[0] == "M" or _ignorable(d):
                continue
            out.append(_LOWER_LOOKALIKES.get(d, d))
    return "".join(out)


def folded(value: str) -> tuple[str, list[int]]:
    """``value`` folded, and for each folded character the index of the character of
    ``value`` it came from (to show a match as typed)."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(value):
        for c in fold(ch):
            chars.append(c)
            origin.append(i)
    return "".join(chars), origin


# -- patterns -------------------------------------------------------------------------

# What else each letter of a term matches (leetspeak).
LEET: dict[str, str] = {
    "a": "a4@",
    "b": "b8",
    "e": "e3€",
    "g": "g96",
    "i": "i1!|",
    "l": "l1|",
    "o": "o0",
    "s": "s5$",
    "t": "t7+",
    "z": "z2",
}
# Runs of one character in a text are cut to this many before matching; a letter of a
# term repeats at most REPEAT_MAX times (both bound the matching time, see _compact).
RUN_MAX = 3
REPEAT_MAX = 8
# Regular English endings the last word of a term may carry (module docstring).
INFLECTIONS = ("s", "es", "ed", "ing", "ings", "in'", "in\u2019")
# A one-word term at least this long (folded letters and digits) matches glued into
# longer words without a ``*`` mark (module docstring, "Glued into a longer word").
GLUED_MIN_LETTERS = 8
# Between every two letters of a word spelt out: "f u c k", "f.u.c.k", "f_u_c_k".
SEPARATORS = " \t\n._-*~·•,:;/\\'\"^="
# Scripts written without spaces between words: no word boundary on these sides.
_NO_SPACE = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u0f00-\u0fff"  # Tibetan
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\U00020000-\U0003134f"
)
_NO_SPACE_CHAR = re.compile(f"[{_NO_SPACE}]")
_WORD_CHAR = f"[^\\W_{_NO_SPACE}]"  # a letter or digit of a script with spaces
_BEFORE = f"(?<!{_WORD_CHAR})"
_AFTER = f"(?!{_WORD_CHAR})"
_GAP = r"[\W_]+"
_GLUED_GAP = r"[\W_]*"
_SEP = "[" + re.escape(SEPARATORS) + "]+"
# Between two letters of a long word split into parts ("reels blocked term",
# "REELS_BLOCKED_TERM", "r33ls-bl0ck3d-t3rm"): up to SPLIT_GAP_MAX characters that are
# neither letters, digits nor leetspeak symbols (the classes stay disjoint, so matching
# stays linear).
SPLIT_GAP_MAX = 8
_LEET_SYMBOLS = "".join(sorted({c for alts in LEET.values() for c in alts if not c.isalnum()}))
_SPLIT_GAP = f"(?:[^\\w{re.escape(_LEET_SYMBOLS)}]|_){{0,{SPLIT_GAP_MAX}}}"
_TERM_WORDS = re.compile(r"[\W_]+")


def _class(ch: str) -> str:
    alts = LEET.get(ch)
    if not alts:
        return re.escape(ch)
    return "[" + re.escape(alts) + "]"


def _compact(word: str, *, glued_before: bool = False, split: bool = False) -> str:
    """``word`` with leetspeak and repeated letters: ``ass`` is ``[a4@]{1,8}[s5$]{2,8}``.

    Repeats are bounded (:data:`REPEAT_MAX`) and the text's runs of one character are
    cut to :data:`RUN_MAX` first (:meth:`Blocklist.find`), so matching stays linear in
    the text: an unbounded ``[i1!|]+[l1|]{2,}`` took seconds on "k" + "1" * 10000.
    ``glued_before``: the first letter is matched exactly as often as the term has it:
    letters may precede the term anyway, and a repeat there would retry every start
    inside a long run of that letter. ``split``: a few separators may stand between any
    two letters (:data:`SPLIT_GAP_MAX`; a word of GLUED_MIN_LETTERS or more)."""
    parts = []
    for i, (ch, run) in enumerate(groupby(word)):
        n = min(len(list(run)), RUN_MAX)
        if i == 0 and glued_before:
            parts.append(_class(ch) + ("" if n == 1 else f"{{{n}}}"))
        else:
            parts.append(_class(ch) + f"{{{n},{REPEAT_MAX}}}")
    return (_SPLIT_GAP if split else "").join(parts)


def _squeezed(canon: str, origin: list[int]) -> tuple[str, list[int], list[int]]:
    """``canon`` with every run of one character cut to :data:`RUN_MAX`, and for each
    kept character the first and last index in the typed text it stands for (the last
    kept one of a run stands for the whole rest of the run)."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i = 0
    while i < len(canon):
        j = i
        while j < len(canon) and canon[j] == canon[i]:
            j += 1
        keep = min(j - i, RUN_MAX)
        for k in range(i, i + keep):
            chars.append(canon[k])
            starts.append(origin[k])
            ends.append(origin[j - 1] if k == i + keep - 1 else origin[k])
        i = j
    return "".join(chars), starts, ends


def _spaced(word: str) -> str:
    """``word`` spelt out with separators between every two letters: ``f.u.c.k``."""
    return _SEP.join(_class(ch) for ch in word)


def _endings(endings: Iterable[str]) -> str:
    return "(?:" + "|".join("".join(_class(c) for c in e) for e in endings) + ")"


def _inflected(word: str, *, glued_before: bool = False, split: bool = False) -> str:
    """``word`` compacted, optionally with a regular ending (:data:`INFLECTIONS`)."""
    whole = _compact(word, glued_before=glued_before, split=split)
    forms = [whole + _endings(INFLECTIONS) + "?"]
    if word.endswith("e") and len(word) > 1:  # kike: kiked, kiking
        stem = _compact(word[:-1], glued_before=glued_before, split=split)
        forms[0] = whole + _endings((*INFLECTIONS, "d")) + "?"
        forms.append(stem + _endings(("ing", "ings", "in'", "in\u2019")))
    if word.endswith("y") and len(word) > 1:  # party: parties, partied
        stem = _compact(word[:-1], glued_before=glued_before, split=split)
        forms.append(stem + _endings(("ies", "ied")))
    if word.endswith("lf") and len(word) > 2:  # yourself: yourselves, wolf: wolves
        stem = _compact(word[:-1], glued_before=glued_before, split=split)
        forms.append(stem + _endings(("ves",)))
    return forms[0] if len(forms) == 1 else "(?:" + "|".join(forms) + ")"


def _pattern(words: list[str], *, glued_before: bool, glued_after: bool, exact: bool) -> str:
    """The regular expression of one folded term (module docstring). ``glued_*``: the
    term may be preceded (followed) by letters; ``exact``: no inflection, whole words
    separated by non-letters."""
    last = words[-1]
    no_space_start = bool(_NO_SPACE_CHAR.match(words[0][0]))
    no_space_end = bool(_NO_SPACE_CHAR.match(last[-1]))
    inflect = not exact and not glued_after and not no_space_end
    # Glued before: the first letter of the first word exactly (_compact's docstring).
    lead = [glued_before] + [False] * (len(words) - 1)
    # A long word may be split by separators between any two of its letters.
    split = [not exact and len(w) >= GLUED_MIN_LETTERS for w in words]
    parts = [
        _compact(w, glued_before=g, split=p)
        for w, g, p in zip(words[:-1], lead, split, strict=False)
    ]
    if inflect:
        parts.append(_inflected(last, glued_before=lead[-1], split=split[-1]))
    else:
        parts.append(_compact(last, glued_before=lead[-1], split=split[-1]))
    body = (_GAP if exact else _GLUED_GAP).join(parts)
    before = "" if glued_before or no_space_start else _BEFORE
    after = "" if glued_after or no_space_end else _AFTER
    found = before + body + after
    if len(words) == 1 and len(last) > 1 and not _NO_SPACE_CHAR.search(last):
        # Spelt out: always whole (the separators make it a word of its own).
        found = f"(?:{found}|{_BEFORE}{_spaced(last)}{_AFTER})"
    return found


# -- the blocklist --------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One line of a blocklist: the term as written without its marks, its optional
    category, and how it may be glued (module docstring, "Glued into a longer word"):
    ``glued_before``/``glued_after`` from a leading/trailing ``*``, ``exact`` from
    double quotes."""

    text: str
    category: str = ""
    glued_before: bool = False
    glued_after: bool = False
    exact: bool = False

    @classmethod
    def parse(cls, written: str, category: str = "") -> Term:
        """The term a list line spells (after its category): ``"word"`` is exact,
        ``*word``/``word*``/``*word*`` may be glued on the starred sides."""
        written = written.strip()
        if len(written) >= 2 and written[0] == written[-1] == '"':
            return cls(written[1:-1].strip(), category, exact=True)
        before, after = written.startswith("*"), written.endswith("*")
        return cls(written.strip("*").strip(), category, before, after)


@dataclass(frozen=True)
class Hit:
    """A blocked term found in a text: the term, and the text's words as typed."""

    term: Term
    typed: str


_CATEGORY = re.compile(r"^([a-z][a-z0-9_]*)\s*:\s*(\S.*)$")


class Blocklist:
    """Terms and phrases matched as whole words of folded text, with inflections, or
    glued into longer words where marked or long enough (module docstring)."""

    def __init__(self, terms: Iterable[Term]) -> None:
        self.terms: list[Term] = []
        patterns: list[str] = []
        for term in terms:
            words = [w for w in _TERM_WORDS.split(folded(term.text)[0]) if w]
            if not words:
                raise ValueError(f"blocked term {term.text!r} has no letters or digits")
            long = len(words) == 1 and len(words[0]) >= GLUED_MIN_LETTERS and not term.exact
            pattern = _pattern(
                words,
                glued_before=term.glued_before or long,
                glued_after=term.glued_after or long,
                exact=term.exact,
            )
            patterns.append(f"(?P<t{len(self.terms)}>{pattern})")
            self.terms.append(term)
        self._regex = re.compile("|".join(patterns)) if patterns else None

    @classmethod
    def parse(cls, lines: Iterable[str], source: str = "<blocklist>") -> Blocklist:
        """A blocklist from the lines of a list file (format: ``safety/text/blocklist.txt``):
        one term or phrase a line, ``#`` comments, optional ``category:`` prefix, ``*``
        and ``"..."`` marks (:meth:`Term.parse`). ValueError names ``source`` and the
        line of a term with no letters."""
        terms: list[Term] = []
        for number, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            found = _CATEGORY.match(line)
            term = Term.parse(found.group(2), found.group(1)) if found else Term.parse(line)
            if not any(c.isalnum() for c in folded(term.text)[0]):
                raise ValueError(f"{source}:{number}: {line!r} has no letters or digits")
            terms.append(term)
        return cls(terms)

    @classmethod
    def load(cls, path: Path) -> Blocklist:
        """The list in file ``path`` (UTF-8); SettingError naming REELS_TEXT_BLOCKLIST
        when it cannot be read or parsed."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            return cls.parse(lines, str(path))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise config.SettingError(f"REELS_TEXT_BLOCKLIST={path}: {exc}") from exc

    def find(self, value: str, most: int = 3) -> list[Hit]:
        """Up to ``most`` blocked terms in ``value``, each shown as typed (distinct)."""
        if self._regex is None or not value:
            return []
        canon, starts, ends = _squeezed(*folded(value))
        hits: dict[str, Hit] = {}
        for m in self._regex.finditer(canon):
            start, end = m.span()
            typed = value[starts[start] : ends[end - 1] + 1]
            term = self.terms[int(str(m.lastgroup)[1:])]
            hits.setdefault(typed, Hit(term, typed))
            if len(hits) >= most:
                break
        return list(hits.values())


# -- refusals -------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a text is refused: ``field`` as the client named it, ``reason`` the phrase a
    person reads after it ("contains a blocked term (...); edit it and try again")."""

    field: str
    reason: str


class ModerationError(text.TextError):
    """A text moderation refused: INVALID_ARGUMENT naming ``field``; the message reads
    "<label>: <reason>"."""

    def __init__(self, field: str, label: str, reason: str) -> None:
        super().__init__(field, label, reason)
        self.message = f"{label}: {reason}"
        self.args = (self.message,)


class TextClassifier(Protocol):
    """A model that judges text the blocklist let through (``REELS_TEXT_CLASSIFIER``).

    ``check`` gets the field name ("title", "text"...) and the normalised text, and
    returns a :class:`Refusal` (its ``reason`` is shown to the user after the field's
    name) or None. It runs on the event loop: do I/O asynchronously and CPU-heavy work
    in a worker thread or another process (e.g. Triton).
    """

    async def check(self, field: str, text: str) -> Refusal | None: ...


def _reason(hits: list[Hit]) -> str:
    shown = ", ".join(
        (f"{h.term.category}: " if h.term.category else "") + f'"{text.shown(h.typed)}"'
        for h in hits
    )
    what = "a blocked term" if len(hits) == 1 else "blocked terms"
    return f"contains {what} ({shown}); edit it and try again"


def raise_refusals(refusals: list[Refusal], labels: Mapping[str, str] | None = None) -> None:
    """One :class:`ModerationError`, or one InvalidArgument naming every refused field."""
    labels = labels or {}
    problems = [ModerationError(r.field, labels.get(r.field, r.field), r.reason) for r in refusals]
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise errors.InvalidArgument(
            "; ".join(p.message for p in problems), [v for p in problems for v in p.violations]
        )


class TextModerator:
    """The blocklist, then the optional classifier (module docstring)."""

    def __init__(self, blocklist: Blocklist, classifier: TextClassifier | None = None) -> None:
        self.blocklist = blocklist
        self.classifier = classifier

    @classmethod
    def from_settings(cls, settings: config.TextModerationSettings) -> TextModerator:
        return cls(Blocklist.load(settings.blocklist), load_classifier(settings.classifier))

    def refusal(self, field: str, value: str) -> Refusal | None:
        """The blocklist's refusal of ``value`` (already normalised), or None."""
        hits = self.blocklist.find(value)
        return Refusal(field, _reason(hits)) if hits else None

    def check(self, field: str, value: str, *, label: str | None = None) -> str:
        """``value`` when the blocklist lets it through, else :class:`ModerationError`."""
        found = self.refusal(field, value)
        if found:
            raise ModerationError(field, label or field, found.reason)
        return value

    async def classify(
        self, texts: Mapping[str, str], *, labels: Mapping[str, str] | None = None
    ) -> None:
        """Run the classifier (if any) on each non-empty text of ``texts`` (field ->
        text), concurrently; one error naming every refused field. Call it after
        :meth:`check` passed (the blocklist always runs first)."""
        classifier = self.classifier
        if classifier is None:
            return
        fields = [(f, v) for f, v in texts.items() if v]
        results = await asyncio.gather(*(classifier.check(f, v) for f, v in fields))
        refusals = [
            dataclasses.replace(r, field=f) for (f, _), r in zip(fields, results, strict=True) if r
        ]
        raise_refusals(refusals, labels)

    async def review(
        self, texts: Mapping[str, str], *, labels: Mapping[str, str] | None = None
    ) -> None:
        """Both stages on ``texts``: the blocklist on each, then the classifier on those
        it let through; one error naming every refused field."""
        refusals = [r for f, v in texts.items() if v and (r := self.refusal(f, v))]
        passed = {f: v for f, v in texts.items() if f not in {r.field for r in refusals}}
        try:
            await self.classify(passed, labels=labels)
        except errors.InvalidArgument as exc:
            refusals += [Refusal(f, d) for f, d in exc.violations]
        raise_refusals(refusals, labels)


def load_classifier(spec: str) -> TextClassifier | None:
    """The classifier the factory ``package.module:factory`` makes (called with no
    arguments), or None for "". SettingError naming REELS_TEXT_CLASSIFIER otherwise."""
    if not spec.strip():
        return None
    module, sep, name = spec.strip().partition(":")
    if not sep or not module or not name:
        raise config.SettingError(
            f"REELS_TEXT_CLASSIFIER={spec!r}: expected package.module:factory"
        )
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise config.SettingError(f"REELS_TEXT_CLASSIFIER={spec!r}: {exc}") from exc
    classifier = factory()
    if not callable(getattr(classifier, "check", None)):
        raise config.SettingError(
            f"REELS_TEXT_CLASSIFIER={spec!r}: {type(classifier).__name__} has no check()"
        )
    return classifier  # type: ignore[no-any-return]


# -- the process's moderator ----------------------------------------------------------


@functools.cache
def default() -> TextModerator:
    """This process's moderator, from the platform settings (``REELS_TEXT_BLOCKLIST``,
    ``REELS_TEXT_CLASSIFIER``), built on first use and kept: the list is read once."""
    return TextModerator.from_settings(config.platform().text_moderation)


def check(field: str, value: str, *, label: str | None = None) -> str:
    """:meth:`TextModerator.check` of the process's moderator (sync call sites)."""
    return default().check(field, value, label=label)


def refusal(field: str, value: str) -> Refusal | None:
    """:meth:`TextModerator.refusal` of the process's moderator."""
    return default().refusal(field, value)


async def classify(texts: Mapping[str, str], *, labels: Mapping[str, str] | None = None) -> None:
    """:meth:`TextModerator.classify` of the process's moderator (async call sites)."""
    await default().classify(texts, labels=labels)
