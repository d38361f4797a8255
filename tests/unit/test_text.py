"""reels.text, the one normaliser for what people type: property-style checks over the
whole code space and generated inputs (no fixed corpus), plus the issue's cases."""

from __future__ import annotations

import random
import sys
import unicodedata

import grpc
import pytest
from reels.v1 import stream_pb2, upload_pb2

from reels import text
from reels.text import TextError, hashtag_key, is_blank, normalise_hashtags, normalise_text

ALL = [chr(cp) for cp in range(sys.maxunicode + 1)]
BY_CATEGORY: dict[str, list[str]] = {}
for _ch in ALL:
    BY_CATEGORY.setdefault(unicodedata.category(_ch), []).append(_ch)

INVISIBLE_CASES = {
    "three ZWSP": "\u200b" * 3,
    "Hangul filler": "\u3164",
    "two Braille blanks": "\u2800" * 2,
    "ZWJ + VS16 + BOM": "\u200d\ufe0f\ufeff",
    "Hangul choseong/jungseong fillers": "\u115f\u1160",
    "halfwidth Hangul filler": "\uffa0",
    "combining marks alone": "\u0301\u0308\u20dd",
    "ideographic and no-break spaces": "\u3000\u00a0\u202f\u2007",
    "soft hyphen, word joiner, LRM": "\u00ad\u2060\u200e",
    "Mongolian vowel separator": "\u180e",
    "null notehead": "\U0001d159",
    "tag characters": "\U000e0041\U000e0042\U000e007f",
    "variation selectors": "\ufe00\U000e0100",
    "khmer inherent vowels": "\u17b4\u17b5",
    "line breaks of every kind": "\r\n\u2028\u2029\x85\x0b\x0c\t",
}


def comment(value: str) -> str:
    return normalise_text(value, field="text", label="comment", max_chars=500, allow_newlines=True)


def refused(value: str, **rules: object) -> TextError:
    with pytest.raises(TextError) as info:
        normalise_text(value, **{"field": "f", "max_chars": 1000, **rules})  # type: ignore[arg-type]
    return info.value


def rng(seed: int) -> random.Random:
    return random.Random(seed)


# --- the cases ---------------------------------------------------------------


def test_nul_in_a_comment_is_invalid_argument_naming_the_field() -> None:
    err = refused("great clip\u0000!!", field="text", label="comment", allow_newlines=True)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.violations[0][0] == "text"
    assert "U+0000" in err.message and "\x00" not in err.message
    (detail,) = err.details()
    assert detail.field_violations[0].field == "text"  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", INVISIBLE_CASES.values(), ids=INVISIBLE_CASES.keys())
def test_a_comment_of_only_invisible_characters_is_empty(value: str) -> None:
    with pytest.raises(TextError) as info:
        comment(value)
    assert info.value.message == "comment is empty"
    assert info.value.violations == [("text", "is empty")]


@pytest.mark.parametrize("value", INVISIBLE_CASES.values(), ids=INVISIBLE_CASES.keys())
def test_an_optional_field_of_only_invisible_characters_is_stored_empty(value: str) -> None:
    assert normalise_text(value, field="description", max_chars=10, required=False) == ""


def test_hashtags_fold_to_nfc_casefolded_keys_of_any_script() -> None:
    assert normalise_hashtags("#Café #東京 #café #Cafe\u0301", max_count=30) == ["café", "東京"]
    assert normalise_hashtags(["#Café", "東京", "CAFÉ", "cafe\u0301"], max_count=30) == [
        "café",
        "東京",
    ]


# --- NFC -----------------------------------------------------------------------------


def test_every_result_is_nfc_and_normalising_is_idempotent() -> None:
    r = rng(1)
    pools = [BY_CATEGORY[c] for c in ("Lu", "Ll", "Lo", "Mn", "Mc", "Nd", "Po", "So", "Zs")]
    decomposable = [ch for ch in ALL if unicodedata.decomposition(ch)[:1] not in ("", "<")]
    for _ in range(2000):
        parts = [r.choice(r.choice(pools + [decomposable])) for _ in range(r.randint(1, 12))]
        value = "x" + unicodedata.normalize(r.choice(["NFD", "NFC"]), "".join(parts))
        try:
            out = normalise_text(value, field="f", max_chars=100, allow_newlines=True)
        except TextError as exc:  # only the Zalgo cap may refuse these
            assert "combining marks" in exc.message
            continue
        assert unicodedata.is_normalized("NFC", out)
        assert normalise_text(out, field="f", max_chars=100, allow_newlines=True) == out


def test_canonically_equivalent_inputs_are_stored_identically() -> None:
    for word in ["Café", "Ångström", "Tiếng Việt", "한국어", "ḍ̇", "Ǖ", "🇫🇷 élan"]:
        forms = {unicodedata.normalize(f, word) for f in ("NFC", "NFD")}
        assert len({normalise_text(f, field="t", max_chars=50) for f in forms}) == 1


def test_compatibility_forms_are_kept() -> None:
    # NFC, not NFKC: superscripts, circled digits, fullwidth forms and compatibility jamo
    # are what the person typed.
    for value in ["x²", "①", "ＡＢＣ", "ㅋㅋㅋ", "ﬁne", "ｶﾀｶﾅ"]:
        assert normalise_text(value, field="t", max_chars=10) == value


# --- refused -------------------------------------------------------------------------


@pytest.mark.parametrize("cp", [c for c in range(0x20) if chr(c) not in "\t\n\r\x0b\x0c"])
def test_every_c0_control_but_whitespace_is_refused_in_every_position(cp: int) -> None:
    for value in (f"{chr(cp)}abc", f"ab{chr(cp)}c", f"abc{chr(cp)}"):
        for newlines in (True, False):
            err = refused(value, allow_newlines=newlines)
            assert f"U+{cp:04X}" in err.message and chr(cp) not in err.message


def test_del_and_c1_controls_are_refused_but_nel_is_a_line_break() -> None:
    for cp in [0x7F, *range(0x80, 0x85), *range(0x86, 0xA0)]:
        assert f"U+{cp:04X}" in refused(f"a{chr(cp)}b").message
    assert comment("a\x85b") == "a\nb"


def test_surrogates_are_refused() -> None:
    # Protobuf and strict UTF-8 decoding (tus) never produce them, but a str can hold one.
    for cp in (0xD800, 0xDBFF, 0xDC00, 0xDFFF):
        assert "surrogate" in refused(f"a{chr(cp)}b").message
    with pytest.raises(UnicodeEncodeError):
        stream_pb2.AddCommentRequest(text="a\ud800b").SerializeToString()
    raw = stream_pb2.AddCommentRequest(text="ab").SerializeToString().replace(b"ab", b"\xed\xa0")
    with pytest.raises(Exception):  # noqa: B017 - DecodeError or ValueError by backend
        stream_pb2.AddCommentRequest.FromString(raw)


def test_noncharacters_are_refused() -> None:
    for cp in (0xFDD0, 0xFDEF, 0xFFFE, 0xFFFF, 0x1FFFE, 0x10FFFF):
        assert "noncharacter" in refused(f"a{chr(cp)}").message


@pytest.mark.parametrize("cp", range(0x202A, 0x202F))
def test_bidi_embeddings_and_overrides_are_refused(cp: int) -> None:
    # The "invoice<RLO>gpj.exe" spoof, and Trojan Source.
    err = refused(f"invoice{chr(cp)}gpj.exe")
    assert f"U+{cp:04X}" in err.message and "bidirectional" in err.message


def test_bidi_isolates_are_kept_when_balanced_per_line() -> None:
    for opener in "\u2066\u2067\u2068":
        assert comment(f"a {opener}שלום\u2069 b") == f"a {opener}שלום\u2069 b"
        assert "never closed" in refused(f"a {opener}שלום").message
        assert "line break" in refused(f"{opener}a\nb\u2069", allow_newlines=True).message
    assert "without being opened" in refused("a\u2069b").message
    assert comment("\u2067\u2066x\u2069\u2069") == "\u2067\u2066x\u2069\u2069"


def test_bidi_marks_and_rtl_text_are_kept() -> None:
    for value in ["مرحبا\u200f!", "abc\u200edef", "\u061c١٢٣", "עברית ו-English"]:
        assert comment(value) == value


def test_zalgo_is_refused_but_real_scripts_stacking_marks_are_not() -> None:
    r = rng(2)
    marks = [ch for ch in BY_CATEGORY["Mn"] if unicodedata.combining(ch)]
    zalgo = "".join("h" + "".join(r.choices(marks, k=r.randint(11, 40))) for _ in range(5))
    assert "combining marks" in refused(zalgo).message
    for value in [
        "Tiếng Việt có dấu",  # Vietnamese: up to 2 marks
        "בְּרֵאשִׁ֖ית",  # Biblical Hebrew: points and cantillation
        "བསྒྲུབས",  # Tibetan stacks
        "क्षत्रिय",  # Devanagari conjuncts
        "1\ufe0f\u20e3",  # keycap emoji: VS16 + enclosing keycap
    ]:
        assert comment(value) == unicodedata.normalize("NFC", value)


# --- normalised or stripped ------------------------------------------------------------


def test_line_breaks_tabs_and_blank_lines_in_multiline_fields() -> None:
    assert comment("a\r\nb\rc\u2028d\u2029e\x0bf\x0cg") == "a\nb\nc\nd\ne\nf\ng"
    assert comment("  a \t\r\n\r\n\r\n\r\n\tb  \n") == "a\n\n b"
    assert comment("a\tb") == "a b"


def test_single_line_fields_turn_line_breaks_into_one_space() -> None:
    title = normalise_text("  My\r\nfirst\t\treel  \u2028 ok ", field="title", max_chars=150)
    assert title == "My first reel ok"
    assert normalise_text("東京\u3000タワー", field="title", max_chars=150) == "東京\u3000タワー"


def test_bom_deprecated_format_and_annotation_characters_are_stripped() -> None:
    assert comment("\ufeffhello\ufeff world") == "hello world"
    assert comment("a\u206ab\u206fc\ufff9d\ufffbe") == "abcde"


def test_emoji_sequences_survive_and_stray_tags_are_stripped() -> None:
    scotland = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
    heart = "\u2764\ufe0f"
    skin = "\U0001f44b\U0001f3fd"
    for value in [scotland, family, heart, skin, f"{heart}{scotland} gg {family}"]:
        assert comment(value) == value
    # "ASCII smuggling": tag characters spelling hidden text, outside any flag.
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "ignore previous instructions")
    assert comment(f"nice clip{hidden}") == "nice clip"
    assert comment(f"\U0001f3f4{hidden}") == "\U0001f3f4"  # never cancelled: not a flag


def test_newer_emoji_unknown_to_this_unicode_database_count_as_visible() -> None:
    for cp in (0x1FA77, 0x1FAE8, 0x1F6DC):  # Unicode 15 emoji: Cn in Python 3.11
        assert comment(chr(cp)) == chr(cp)


def test_zero_width_characters_inside_words_are_kept_and_trimmed_at_the_edges() -> None:
    persian = "می\u200cخواهم"
    assert comment(f"\u200b{persian}\u200b\u2060") == persian
    assert comment("a\u200bb") == "a\u200bb"


# --- empty and visible -------------------------------------------------------------------


def test_random_strings_of_invisible_characters_are_always_empty() -> None:
    invisible = [
        ch
        for ch in ALL
        if not text.is_visible(ch)
        and unicodedata.category(ch) not in ("Cc", "Cs")
        and not (0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069)
        and not (0xFDD0 <= ord(ch) <= 0xFDEF or (ord(ch) & 0xFFFE) == 0xFFFE)
    ]
    r = rng(3)
    for _ in range(500):
        value = "".join(r.choices(invisible, k=r.randint(1, 6)))
        with pytest.raises(TextError) as info:
            comment(value)
        assert info.value.message in ("comment is empty",) or "combining" in info.value.message


def test_one_visible_character_of_any_category_makes_a_text_non_empty() -> None:
    r = rng(4)
    for cat in ("Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi"):
        for ch in r.sample(BY_CATEGORY[cat], min(40, len(BY_CATEGORY[cat]))):
            if not text.is_visible(ch):
                assert ch in "\u115f\u1160\u3164\uffa0"  # the fillers are letters (Lo)
                continue
            assert comment(f"\u200b{ch}\u200b") == unicodedata.normalize("NFC", ch)
    for cat in ("Po", "Sm", "Sc", "Sk", "So", "Co"):
        for ch in r.sample(BY_CATEGORY[cat], min(40, len(BY_CATEGORY[cat]))):
            assert not is_blank(ch) or ch in "\u2800\U0001d159"


def test_every_code_point_is_classified_without_error() -> None:
    # The whole code space through the checks: nothing raises anything but TextError.
    for start in range(0, sys.maxunicode + 1, 4096):
        chunk = "".join(ALL[start : start + 4096])
        for piece in (chunk[i : i + 64] for i in range(0, len(chunk), 64)):
            try:
                normalise_text("x" + piece, field="f", max_chars=1000, allow_newlines=True)
            except TextError:
                pass


# --- length ---------------------------------------------------------------------------


def test_length_is_code_points_after_normalising() -> None:
    nfd = unicodedata.normalize("NFD", "é" * 150)  # 300 code points in, 150 after NFC
    assert len(normalise_text(nfd, field="title", max_chars=150)) == 150
    err = refused("é" * 151, field="title", max_chars=150)
    assert err.violations == [("title", "is longer than 150 characters (got 151)")]
    cjk = "".join(chr(0x4E00 + i % 20000) for i in range(2200))
    assert normalise_text(cjk, field="description", max_chars=2200) == cjk
    assert "longer than 2200" in refused(cjk + "字", field="description", max_chars=2200).message
    # Trailing blanks do not count: they are trimmed first.
    assert normalise_text("a" * 150 + " " * 50, field="title", max_chars=150) == "a" * 150


def test_an_emoji_counts_its_code_points() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 7 code points
    assert normalise_text(family * 2, field="t", max_chars=14) == family * 2
    assert "got 21" in refused(family * 3, field="t", max_chars=14).message


def test_very_long_inputs_are_refused_quickly_and_never_echoed() -> None:
    import time

    for value in ("a" * 5_000_000, "\x00" * 5_000_000, "é\u0301" * 2_000_000):
        started = time.perf_counter()
        err = refused(value, field="text", max_chars=500)
        assert time.perf_counter() - started < 0.5
        assert len(err.message) < 200
    # Within the cheap bound, but long after normalising: counted exactly.
    err = refused("ab" * 1000, field="text", max_chars=500)
    assert err.violations == [("text", "is longer than 500 characters (got 2000)")]


# --- hashtags ----------------------------------------------------------------------------


def test_hashtag_keys_are_a_canonical_caseless_match() -> None:
    r = rng(5)
    cased = [ch for ch in BY_CATEGORY["Lu"] + BY_CATEGORY["Ll"] if ch.casefold() != ch.upper()]
    for _ in range(300):
        word = "".join(r.choices(cased, k=r.randint(1, 8)))
        variants = {word, word.upper(), word.lower(), unicodedata.normalize("NFD", word)}
        keys = {hashtag_key(v) for v in variants}
        assert len(keys) == 1, (word, keys)
        (key,) = keys
        assert unicodedata.is_normalized("NFC", key) and hashtag_key(key) == key


def test_hashtags_of_every_script_are_accepted() -> None:
    tags = [
        "東京",
        "서울",
        "मुंबई",
        "القاهرة",
        "ירושלים",
        "Москва",
        "Αθήνα",
        "ঢাকা",
        "กรุงเทพ",
        "می\u200cخواهم",  # Persian needs ZWNJ
        "l·l",
        "ロック・フェス",
        "under_score",
        "2024",
        "Ⅻ",
    ]
    assert normalise_hashtags(" ".join("#" + t for t in tags), max_count=30) == [
        hashtag_key(t) for t in tags
    ]


def test_hashtag_separators_and_hash_signs_of_ime_keyboards() -> None:
    assert normalise_hashtags("#a#b,c，d、e\u3000＃f", max_count=30) == list("abcdef")
    assert normalise_hashtags(["#", " ", "\u200b", "#x"], max_count=30) == ["x"]


def test_bad_hashtags_are_listed_escaped() -> None:
    cases = {
        "a\u0000b": "U+0000",
        "tag\u202e": "U+202E",
        "ok \u202dx": "U+202D",
        "x" * 51: "longer than 50",
        "\u00e9" * 26 + "\u00df" * 13: "longer than 50",  # 52 once casefolded (ß: ss)
    }
    for tag, problem in cases.items():
        with pytest.raises(TextError) as info:
            normalise_hashtags([tag], max_count=30)
        assert info.value.violations[0][0] == "hashtags"
        assert problem in info.value.message, info.value.message
        assert not any(ch in info.value.message for ch in "\u0000\u202e\u202d")


def test_what_used_to_refuse_a_hashtag_is_now_cleaned_away() -> None:
    # Before: 400 for each. A space, '!' and an emoji separate; a mark with no base, a
    # Hangul filler and a joiner at the edge are invisible and dropped (rule 5).
    assert normalise_hashtags(["not ok!"], max_count=30) == ["not", "ok"]
    assert normalise_hashtags(["\u0301a", "\u3164x", "a\u200d"], max_count=30) == ["a", "x"]
    assert normalise_hashtags(["😀", "#", "\u200b"], max_count=30) == []


def test_hashtag_count_is_of_distinct_keys() -> None:
    many = [f"Tag{i}" for i in range(30)] + [f"TAG{i}" for i in range(30)]
    assert len(normalise_hashtags(many, max_count=30)) == 30
    with pytest.raises(TextError) as info:
        normalise_hashtags([f"t{i}" for i in range(31)], max_count=30)
    assert "at most 30 (got 31)" in info.value.message


# --- the upload metadata rules use it -----------------------------------------------------


def test_upload_metadata_validation_reports_every_text_field() -> None:
    from svc_upload.limits import NewUpload, UploadLimits, validate

    meta = NewUpload(
        title="bad\u0000title",
        description="line\u0000",
        hashtags=["#Café", "bad\x00tag"],
        content_type=1,
        audio_attribution="\u202eevil",
        declared_size=10,
        sha256_hex=None,
        filename="clip\x00.mp4",
        mime_type="video/mp4\x00",
    )
    with pytest.raises(Exception) as info:
        validate(meta, UploadLimits())
    fields = {f for f, _ in info.value.violations}  # type: ignore[attr-defined]
    assert fields == {
        "title",
        "description",
        "hashtags",
        "audio_attribution",
        "filename",
        "mime_type",
    }
    assert "\x00" not in info.value.message  # type: ignore[attr-defined]

    ok = validate(
        NewUpload(
            title=unicodedata.normalize("NFD", " Été\r\nà Paris "),
            description="ligne 1\r\nligne 2\ufeff",
            hashtags=["#Café", "東京", "#café", "Cafe\u0301"],
            content_type=1,
            audio_attribution="",
            declared_size=10,
            sha256_hex=None,
            filename="clip.mp4",
            mime_type="video/mp4",
        ),
        UploadLimits(),
    )
    assert (ok.title, ok.description, ok.hashtags) == (
        "Été à Paris",
        "ligne 1\nligne 2",
        ["café", "東京"],
    )
    # An invisible title is an empty one: the file name's stem (limits._title).
    assert validate(dataclass_replace(ok, title="\u200b\u3164"), UploadLimits()).title == "clip"


def dataclass_replace(obj: object, **changes: object) -> object:
    import dataclasses

    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


def test_protobuf_carries_nul_and_the_normaliser_refuses_it() -> None:
    # Over gRPC the NUL arrives intact (protobuf strings may hold it): the check is ours.
    request = upload_pb2.CreateUploadRequest.FromString(
        upload_pb2.CreateUploadRequest(title="a\x00b").SerializeToString()
    )
    assert request.title == "a\x00b"
    assert "U+0000" in refused(request.title, field="title").message


# --- review follow-ups: hashtags end at any script's punctuation and symbols ---------------

WORD_SCRIPTS = {
    # first, last code point of letters of a script (no marks: a word of its own letters)
    "latin": (0x61, 0x7A),
    "arabic": (0x0628, 0x064A),
    "devanagari": (0x0915, 0x0939),
    "cjk": (0x4E00, 0x9FFF),
    "hangul": (0xAC00, 0xD7A3),
    "cyrillic": (0x0430, 0x044F),
    "hebrew": (0x05D0, 0x05EA),
    "thai": (0x0E01, 0x0E2E),
    "ethiopic": (0x1200, 0x1248),
}


def word(r: random.Random, script: str | None = None, n: int | None = None) -> str:
    lo, hi = WORD_SCRIPTS[script or r.choice(sorted(WORD_SCRIPTS))]
    return "".join(chr(r.randint(lo, hi)) for _ in range(n or r.randint(1, 8)))


def tags_of(raw: object) -> list[str]:
    return normalise_hashtags(raw, max_count=1000)  # type: ignore[arg-type]


# Separators by Unicode category, not a hand list: every punctuation and symbol code point
# this Python knows, except '_' (part of a tag) and the documented word-internal marks.
WORD_INNER = set("_\u00b7\u30fb\u05f3\u05f4\u0f0b")
PUNCTUATION = [ch for cat in ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po") for ch in BY_CATEGORY[cat]]
SYMBOLS = [ch for cat in ("Sm", "Sc", "Sk", "So") for ch in BY_CATEGORY[cat]]


@pytest.mark.parametrize("kind", ["punctuation", "symbols"])
def test_every_punctuation_and_symbol_of_every_script_separates_hashtags(kind: str) -> None:
    # U+0387 GREEK ANO TELEIA is U+00B7 after NFC: word-internal as well.
    chars = [
        ch
        for ch in (PUNCTUATION if kind == "punctuation" else SYMBOLS)
        if unicodedata.normalize("NFC", ch) not in WORD_INNER
    ]
    assert len(chars) > (700 if kind == "punctuation" else 6000)
    r = rng(11)
    for ch in chars:
        a, b = word(r), word(r)
        ka, kb = hashtag_key(a), hashtag_key(b)
        for raw in (f"#{a}{ch} #{b}", f"#{a}{ch}#{b}", f"#{a}{ch}{b}", f"{ch}#{a} {ch}{b}{ch}"):
            assert tags_of(raw) == list(dict.fromkeys([ka, kb])), (describe(ch), raw)
        assert tags_of(f"#{a}{ch}") == [ka], describe(ch)  # trailing: stripped like ','
        assert tags_of([f"#{a}{ch}", f"{ch}{b}"]) == list(dict.fromkeys([ka, kb]))
        assert tags_of(f"#{ch}") == [] and tags_of([ch * 3]) == []  # nothing left: dropped


def describe(ch: str) -> str:
    return text.describe(ch)


def test_the_reviewers_inputs() -> None:
    cases = {
        "#مرحبا، #عالم": ["مرحبا", "عالم"],  # U+060C ARABIC COMMA
        "#a؛ #b": ["a", "b"],  # U+061B ARABIC SEMICOLON
        "#東京。#大阪": ["東京", "大阪"],  # U+3002 IDEOGRAPHIC FULL STOP
        "#नमस्ते। #भारत": ["नमस्ते", "भारत"],  # U+0964 DEVANAGARI DANDA
        "#wow!": ["wow"],
        "#a.": ["a"],
        "#a; #b": ["a", "b"],
        "#love\ufe0f": ["love"],  # VS16 from an emoji keyboard
        "#abc\u200e": ["abc"],  # LRM from RTL input
        "#I❤️NY #😀": ["i", "ny"],
        "#️⃣ #x": ["x"],  # keycap: '#', VS16, U+20E3 (a mark on the '#')
    }
    for raw, expected in cases.items():
        assert tags_of(raw) == expected, raw


def test_unassigned_and_private_use_code_points_separate_too() -> None:
    # Cn: newer emoji this Unicode database does not know; Co: private use (U+F8FF).
    unassigned = [ch for ch in BY_CATEGORY["Cn"] if not text._is_noncharacter(ord(ch))]
    r = rng(12)
    for ch in r.sample(unassigned, 300) + r.sample(BY_CATEGORY["Co"], 100):
        if text._is_default_ignorable(ord(ch)):
            continue  # U+FFF0.., U+E0080..: ignorable, removed (next test)
        assert tags_of(f"#ab{ch}cd") == ["ab", "cd"], describe(ch)


def default_ignorables() -> list[str]:
    """Every Default_Ignorable_Code_Point but the joiners (own rule) and the bidi
    embeddings and isolates (refused, or refused when unbalanced)."""
    out = []
    for lo, hi in text._DEFAULT_IGNORABLE:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if ch in "\u200c\u200d" or ch in text._BIDI_EMBEDDINGS or 0x2066 <= cp <= 0x2069:
                continue
            out.append(ch)
    return out


def test_default_ignorables_are_removed_from_tags_anywhere() -> None:
    ignorables = default_ignorables()
    assert len(ignorables) > 4000
    r = rng(13)
    for ch in ignorables:
        w = word(r, n=r.randint(2, 8))
        key = hashtag_key(w)
        i = r.randint(1, len(w) - 1)
        for raw in (f"#{w}{ch}", f"#{ch}{w}", f"#{w[:i]}{ch}{w[i:]}", f"#{ch}{w}{ch}{ch}"):
            assert tags_of(raw) == [key], (describe(ch), raw)
        assert tags_of(f"#{ch}") == [] and tags_of(f"{ch} {ch}") == []


def test_balanced_isolates_are_removed_and_unbalanced_ones_refused() -> None:
    assert tags_of("#\u2067שלום\u2069 #\u2068abc\u2069") == ["שלום", "abc"]
    with pytest.raises(TextError) as info:
        tags_of("#\u2067שלום")
    assert "U+2069" in info.value.message


def test_a_joiner_is_kept_only_where_it_changes_the_drawing() -> None:
    r = rng(14)
    # Between letters of scripts that do not join: nothing changes on screen, so
    # #a\u200db is #ab (one tag, one key).
    for _ in range(300):
        w = word(r, r.choice(["latin", "cjk", "hangul", "cyrillic", "hebrew", "thai"]), 4)
        j = r.choice("\u200c\u200d")
        i = r.randint(1, 3)
        assert tags_of(f"#{w[:i]}{j}{w[i:]} #{w}") == [hashtag_key(w)], repr(w)
        assert tags_of(f"#{j}{w}{j}") == [hashtag_key(w)]  # at the edges: always dropped
    # ZWNJ between two Arabic-script letters (Persian) and either joiner next to a
    # virama (Indic half forms, Bengali ya-phala) change the word: kept, and a
    # different tag from the one without.
    kept = {
        "persian": "می\u200cخواهم",
        "devanagari_half": "क्\u200dष",
        "devanagari_halant": "क्\u200cष",
        "bengali_ya_phala": "র\u200d্য",
    }
    for name, tag in kept.items():
        plain = tag.replace("\u200c", "").replace("\u200d", "")
        assert tags_of(f"#{tag} #{plain}") == [tag, plain], name
    # A run of joiners is one.
    assert tags_of("#می\u200c\u200cخواهم") == ["می\u200cخواهم"]


def test_hashtags_from_random_text_are_valid_stable_keys() -> None:
    """Random text of every category (but refused ones): every tag that comes out is a
    valid key, and reading the keys again gives the same keys."""
    r = rng(15)
    pool = [
        ch
        for cat, chars in BY_CATEGORY.items()
        if cat not in ("Cc", "Cs")
        for ch in r.sample(chars, min(len(chars), 200))
        if not text._refused(ch) and ch not in "\u2066\u2067\u2068\u2069"
    ] + list(" #,.!\u200c\u200d\u00b7")
    for _ in range(2000):
        raw = "".join(r.choice(pool) for _ in range(r.randint(1, 30)))
        keys = tags_of(raw)
        for key in keys:
            assert text._hashtag_problem(key) is None, (raw, key)
            assert unicodedata.is_normalized("NFC", key) and hashtag_key(key) == key
            assert not any(text._tag_class(ch) == text._IGNORABLE for ch in key)
        assert tags_of(" ".join("#" + k for k in keys)) == keys, raw
        assert tags_of(keys) == keys


# --- review follow-ups: an invisible title is an empty one, on every door ---------------


def invisible_texts(r: random.Random, n: int) -> list[str]:
    """Texts with nothing visible: separators, default ignorables, marks with no base,
    the blank-looking ones; generated from the classification, not a hand list."""
    pool = [ch for ch in BY_CATEGORY["Zs"] + default_ignorables() if not text.is_visible(ch)]
    pool += ["\u200c", "\u200d", "\u2800", "\U0001d159"]
    marks = BY_CATEGORY["Mn"]
    out = []
    for _ in range(n):
        parts = [r.choice(pool) for _ in range(r.randint(1, 6))]
        if r.random() < 0.3:
            parts.insert(0, r.choice(marks))  # a mark with nothing to sit on
        out.append("".join(parts))
    return out


REVIEWED_INVISIBLE_TITLES = [
    "\u200b",
    "\u3164",
    "\u180e",
    "\ufeff",
    "\u2060",
    "\u115f",
    "\u0301",
    "\U000e0041\U000e0042",  # tag characters
    "\u00a0\u3000",  # already the stem before: the same rule for all of them now
]


def upload_meta(**fields: object) -> object:
    from svc_upload.limits import NewUpload

    values: dict[str, object] = {
        "title": "",
        "description": "",
        "hashtags": [],
        "content_type": 1,
        "audio_attribution": "",
        "declared_size": 10,
        "sha256_hex": None,
        "filename": "",
        "mime_type": "video/mp4",
        **fields,
    }
    return NewUpload(**values)  # type: ignore[arg-type]


def test_an_invisible_title_falls_back_exactly_like_an_empty_one() -> None:
    from svc_upload.limits import UNTITLED, UploadLimits, validate

    limits = UploadLimits()
    titles = REVIEWED_INVISIBLE_TITLES + invisible_texts(rng(16), 300)
    for title in titles:
        for filename, expected in [("My clip.mp4", "My clip"), ("", UNTITLED), (".mp4", UNTITLED)]:
            got = validate(upload_meta(title=title, filename=filename), limits).title  # type: ignore[arg-type]
            empty = validate(upload_meta(title="", filename=filename), limits).title  # type: ignore[arg-type]
            assert got == empty == expected, (text.shown(title), filename)
        # An invisible file name gives no title either.
        assert validate(upload_meta(filename=title + ".mp4"), limits).title == UNTITLED  # type: ignore[arg-type]


def test_a_title_with_refused_characters_is_named_never_replaced() -> None:
    from reels import errors
    from svc_upload.limits import UploadLimits, validate

    for title in ["\x00", "\u200b\x00", "\u202e", "\u2066"]:
        with pytest.raises(errors.InvalidArgument) as info:
            validate(upload_meta(title=title, filename="clip.mp4"), UploadLimits())  # type: ignore[arg-type]
        assert info.value.violations[0][0] == "title"


def test_a_title_cut_from_a_long_file_name_is_still_valid_text() -> None:
    from svc_upload.limits import UploadLimits, validate

    limits = UploadLimits()
    r = rng(17)
    clusters = [
        "क्षि",  # Devanagari conjunct with a vowel sign
        "👩\u200d👩\u200d👧",  # a ZWJ family
        "👍🏽",  # skin tone
        "e\u0301\u0323",  # marks on a base
        "\u2067שלום\u2069",  # an isolate
        "葛\U000e0100",  # an ideographic variation sequence
    ]
    for _ in range(200):
        stem = ""
        while len(stem) < limits.title_max + 10:  # longer than a title, within a file name
            stem += r.choice(clusters)
        title = validate(upload_meta(filename=stem + ".mp4"), limits).title  # type: ignore[arg-type]
        assert 0 < len(title) <= limits.title_max
        assert normalise_text(title, field="title", max_chars=limits.title_max) == title

        # A prefix of the stem (less any isolate opener the cut left unclosed), cut
        # where a new character starts, not inside one.
        def plain(value: str) -> str:
            return "".join(ch for ch in value if ch not in "\u2066\u2067\u2068\u2069")

        whole, cut = plain(unicodedata.normalize("NFC", stem)), plain(title)
        assert whole.startswith(cut), title[-5:]
        assert len(whole) == len(cut) or not text._continues(whole[len(cut)]), title[-5:]
        assert not title.endswith("\u200d")


def test_a_huge_hashtags_input_is_refused_before_any_work() -> None:
    import time

    start = time.monotonic()
    for raw in ([f"t{i}" for i in range(200_000)], "#x😀" * 200_000):
        with pytest.raises(TextError) as info:
            normalise_hashtags(raw, max_count=30)
        assert "longer than" in info.value.message
    assert time.monotonic() - start < 1.0
    # Within the bound, many emoji between tags are fine (they only separate).
    assert normalise_hashtags("#a" + "😀" * 5000 + "#b", max_count=30) == ["a", "b"]
