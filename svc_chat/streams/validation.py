"""What CreateStream accepts: a stream's title, description and tags, normalised.

Pure: no I/O. Every text goes through ``reels.text`` (NFC, refused control and bidi
override characters, trimmed) before its limit is checked; limits count code points.
Then title, description and tags pass the blocklist of ``reels.moderation`` (the
classifier, if any, runs in the async caller: :func:`review`).
All problems of one request are reported together (one INVALID_ARGUMENT with a
BadRequest violation per field).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reels import errors, moderation, text

TITLE_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 2000
TAGS_MAX = 10


@dataclass(frozen=True)
class NewStream:
    title: str
    description: str
    tags: list[str]


def new_stream(title: str, description: str, tags: Iterable[str]) -> NewStream:
    """The normalised fields, or INVALID_ARGUMENT naming every bad one.

    title: 1..200 characters on one line; description: at most 2,000 (line breaks
    kept); tags: at most 10 distinct hashtags of 1..50 letters, digits or ``_`` (a
    leading ``#`` is dropped; compared and stored casefolded: ``reels.text``).
    """
    problems: list[text.TextError] = []
    clean_title = clean_description = ""
    clean_tags: list[str] = []
    try:
        clean_title = text.normalise_text(title, field="title", max_chars=TITLE_MAX_CHARS)
    except text.TextError as exc:
        problems.append(exc)
    try:
        clean_description = text.normalise_text(
            description,
            field="description",
            max_chars=DESCRIPTION_MAX_CHARS,
            allow_newlines=True,
            required=False,
        )
    except text.TextError as exc:
        problems.append(exc)
    tags = list(tags)
    try:
        clean_tags = text.normalise_hashtags(tags, max_count=TAGS_MAX, field="tags")
    except text.TextError as exc:
        problems.append(exc)
    bad = {p.field for p in problems}
    typed = {"title": clean_title, "description": clean_description, "tags": " ".join(tags)}
    for field, value in typed.items():
        if field not in bad and (found := moderation.refusal(field, value)):
            problems.append(moderation.ModerationError(field, field, found.reason))
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise errors.InvalidArgument(
            "; ".join(p.message for p in problems),
            [v for p in problems for v in p.violations],
        )
    return NewStream(clean_title, clean_description, clean_tags)


async def review(stream: NewStream) -> None:
    """The text classifier (``REELS_TEXT_CLASSIFIER``, if any) on a checked stream's
    texts, after :func:`new_stream`'s blocklist; INVALID_ARGUMENT naming each refused
    field."""
    await moderation.classify(
        {
            "title": stream.title,
            "description": stream.description,
            "tags": " ".join(f"#{tag}" for tag in stream.tags),
        }
    )
