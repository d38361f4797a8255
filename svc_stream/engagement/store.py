"""Engagement in PostgreSQL (the source of truth), each change announced as an event.

Every state change and its ``EngagementEvent`` commit in one transaction through the
outbox, so an event exists exactly when the change does. Repeating an action that
changes nothing (liking a liked video, following twice, unliking what is not liked)
writes nothing and emits nothing: counters downstream stay exact.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf import timestamp_pb2
from reels.v1 import events_pb2
from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors, moderation, topics
from reels.events import new_event_id
from reels.outbox import enqueue_message
from reels.text import normalise_text
from svc_stream.engagement.models import CreatorFollow, VideoComment, VideoLike, VideoShare
from svc_stream.events import validation

MAX_COMMENT_CHARS = 500
MAX_PAGE = 100
DEFAULT_PAGE = 20
MAX_CHANNEL_CHARS = 32
GT = events_pb2.EngagementType

Sessions = async_sessionmaker[AsyncSession]


async def _emit(
    session: AsyncSession,
    kind: int,
    user_id: str,
    *,
    video_id: str = "",
    creator_id: str = "",
    comment_id: str = "",
    text_: str = "",
    channel: str = "",
) -> None:
    event_id = new_event_id()
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    message = events_pb2.EngagementEvent(
        meta=events_pb2.EventMeta(event_id=str(event_id), occurred_at=now, producer="svc_stream"),
        type=kind,  # type: ignore[arg-type]
        user_id=user_id,
        video_id=video_id,
        creator_id=creator_id,
        comment_id=comment_id,
        text=text_,
        channel=channel,
    )
    # Follow/unfollow have no video: they are keyed (ordered) by the creator instead.
    await enqueue_message(
        session, topics.ENGAGEMENT_EVENTS, message, event_id, key=video_id or creator_id
    )


async def _like_count(session: AsyncSession, video_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(VideoLike).where(VideoLike.video_id == video_id)
        )
        or 0
    )


async def like(sm: Sessions, user_id: str, video_id: str, creator_id: str) -> int:
    """Like (idempotent); returns the like count."""
    async with sm() as session, session.begin():
        inserted = await session.scalar(
            insert(VideoLike)
            .values(video_id=video_id, user_id=user_id)
            .on_conflict_do_nothing()
            .returning(text("1"))
        )
        if inserted is not None:
            await _emit(
                session, GT.ENGAGEMENT_TYPE_LIKE, user_id, video_id=video_id, creator_id=creator_id
            )
        return await _like_count(session, video_id)


async def unlike(sm: Sessions, user_id: str, video_id: str, creator_id: str) -> int:
    """Remove a like (idempotent); returns the like count."""
    async with sm() as session, session.begin():
        result = await session.execute(
            delete(VideoLike).where(VideoLike.video_id == video_id, VideoLike.user_id == user_id)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            await _emit(
                session,
                GT.ENGAGEMENT_TYPE_UNLIKE,
                user_id,
                video_id=video_id,
                creator_id=creator_id,
            )
        return await _like_count(session, video_id)


def check_comment_text(raw: str) -> str:
    """The comment as stored (``reels.text``: NFC, control characters refused, invisible
    text is empty, at most MAX_COMMENT_CHARS characters; then the blocklist of
    ``reels.moderation``), or INVALID_ARGUMENT naming the field ``text``."""
    body = normalise_text(
        raw, field="text", label="comment", max_chars=MAX_COMMENT_CHARS, allow_newlines=True
    )
    return moderation.check("text", body, label="comment")


@dataclass(frozen=True)
class CommentRow:
    comment_id: str
    video_id: str
    user_id: str
    text: str
    created_at: datetime


def _row(c: VideoComment) -> CommentRow:
    return CommentRow(str(c.id), c.video_id, c.user_id, c.text, c.created_at)


async def add_comment(
    sm: Sessions, user_id: str, video_id: str, creator_id: str, body: str, client_id: str
) -> CommentRow:
    """Store a comment; a retry with the same client_comment_id returns the first one."""
    check_identifier("client_comment_id", client_id, MAX_CLIENT_COMMENT_ID, required=False)
    body = check_comment_text(body)
    await moderation.classify({"text": body}, labels={"text": "comment"})  # the model, if any
    async with sm() as session, session.begin():
        comment_id = uuid.uuid4()
        values = {
            "id": comment_id,
            "video_id": video_id,
            "user_id": user_id,
            "text": body,
            "client_comment_id": client_id or None,
        }
        stmt = insert(VideoComment).values(**values)
        if client_id:
            stmt = stmt.on_conflict_do_nothing(
                index_elements=["user_id", "client_comment_id"],
                index_where=text("client_comment_id IS NOT NULL"),
            )
        inserted = await session.scalar(stmt.returning(VideoComment.id))
        if inserted is None:
            existing = await session.scalar(
                select(VideoComment).where(
                    VideoComment.user_id == user_id, VideoComment.client_comment_id == client_id
                )
            )
            assert existing is not None
            return _row(existing)
        await _emit(
            session,
            GT.ENGAGEMENT_TYPE_COMMENT,
            user_id,
            video_id=video_id,
            creator_id=creator_id,
            comment_id=str(comment_id),
            text_=body,
        )
        row = await session.scalar(select(VideoComment).where(VideoComment.id == comment_id))
        assert row is not None
        return _row(row)


def _encode_cursor(row: CommentRow) -> str:
    raw = f"{row.created_at.isoformat()}|{row.comment_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, cid = raw.split("|", 1)
        return datetime.fromisoformat(stamp), uuid.UUID(cid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument("bad cursor", [("cursor", "is not a cursor we gave")]) from exc


async def list_comments(
    sm: Sessions, video_id: str, page_size: int, cursor: str
) -> tuple[list[CommentRow], str]:
    """Newest first; keyset pagination on (created_at, id) so pages never skip or repeat."""
    if page_size < 0 or page_size > MAX_PAGE:
        raise errors.InvalidArgument(
            "bad page size", [("page_size", f"must be between 1 and {MAX_PAGE}")]
        )
    size = page_size or DEFAULT_PAGE
    query = select(VideoComment).where(VideoComment.video_id == video_id)
    if cursor:
        stamp, cid = _decode_cursor(cursor)
        query = query.where(tuple_(VideoComment.created_at, VideoComment.id) < (stamp, cid))
    query = query.order_by(VideoComment.created_at.desc(), VideoComment.id.desc()).limit(size + 1)
    async with sm() as session:
        rows = [_row(c) for c in (await session.scalars(query)).all()]
    more = len(rows) > size
    rows = rows[:size]
    return rows, (_encode_cursor(rows[-1]) if more and rows else "")


def check_channel(channel: str) -> str:
    value = channel.strip().lower() or "unknown"
    if len(value) > MAX_CHANNEL_CHARS or not value.replace("_", "").replace("-", "").isalnum():
        raise errors.InvalidArgument(
            "bad share channel",
            [("channel", f"letters, digits, '_' or '-', at most {MAX_CHANNEL_CHARS}")],
        )
    return value


async def share(sm: Sessions, user_id: str, video_id: str, creator_id: str, channel: str) -> int:
    """Record a share (every share counts); returns the share count."""
    value = check_channel(channel)
    async with sm() as session, session.begin():
        await session.execute(
            insert(VideoShare).values(video_id=video_id, user_id=user_id, channel=value)
        )
        await _emit(
            session,
            GT.ENGAGEMENT_TYPE_SHARE,
            user_id,
            video_id=video_id,
            creator_id=creator_id,
            channel=value,
        )
        return int(
            await session.scalar(
                select(func.count()).select_from(VideoShare).where(VideoShare.video_id == video_id)
            )
            or 0
        )


# Identifiers people's clients send: the same rule as player events' ids (printable,
# no whitespace, bounded), so a NUL or a 100 KB id is a 400 naming the field, never a
# database refusal (issue 8: one rule for what clients send).
MAX_CREATOR_ID = 64
MAX_CLIENT_COMMENT_ID = 128


def check_identifier(field: str, value: str, longest: int, *, required: bool) -> None:
    """INVALID_ARGUMENT naming ``field`` unless ``value`` is a well-formed identifier."""
    why = validation.check_identifier(field, value, longest, required)
    if why:
        raise errors.InvalidArgument(why, [(field, why)])


def check_follow(user_id: str, creator_id: str) -> None:
    check_identifier("creator_id", creator_id, MAX_CREATOR_ID, required=True)
    if creator_id == user_id:
        raise errors.InvalidArgument(
            "you cannot follow yourself", [("creator_id", "must not be the caller")]
        )


async def _followers(session: AsyncSession, creator_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(CreatorFollow)
            .where(CreatorFollow.creator_id == creator_id)
        )
        or 0
    )


async def follow(sm: Sessions, user_id: str, creator_id: str) -> int:
    """Follow (idempotent); returns the follower count."""
    check_follow(user_id, creator_id)
    async with sm() as session, session.begin():
        inserted = await session.scalar(
            insert(CreatorFollow)
            .values(follower_id=user_id, creator_id=creator_id)
            .on_conflict_do_nothing()
            .returning(text("1"))
        )
        if inserted is not None:
            await _emit(session, GT.ENGAGEMENT_TYPE_FOLLOW, user_id, creator_id=creator_id)
        return await _followers(session, creator_id)


async def unfollow(sm: Sessions, user_id: str, creator_id: str) -> int:
    """Unfollow (idempotent); returns the follower count."""
    check_identifier("creator_id", creator_id, MAX_CREATOR_ID, required=True)
    async with sm() as session, session.begin():
        result = await session.execute(
            delete(CreatorFollow).where(
                CreatorFollow.follower_id == user_id, CreatorFollow.creator_id == creator_id
            )
        )
        if result.rowcount:  # type: ignore[attr-defined]
            await _emit(session, GT.ENGAGEMENT_TYPE_UNFOLLOW, user_id, creator_id=creator_id)
        return await _followers(session, creator_id)


async def follower_count(sm: Sessions, creator_id: str) -> int:
    async with sm() as session:
        return await _followers(session, creator_id)


async def video_counts(sm: Sessions, video_ids: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """(likes, shares, comments) per video, straight from the source of truth."""
    if not video_ids:
        return {}
    ids = list(video_ids)
    out = {vid: [0, 0, 0] for vid in ids}
    async with sm() as session:
        for slot, model in enumerate((VideoLike, VideoShare, VideoComment)):
            rows = await session.execute(
                select(model.video_id, func.count())
                .where(model.video_id.in_(ids))
                .group_by(model.video_id)
            )
            for vid, n in rows.all():
                out[vid][slot] = int(n)
    return {vid: (c[0], c[1], c[2]) for vid, c in out.items()}
