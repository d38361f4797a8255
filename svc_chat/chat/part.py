"""The chat part of svc_chat: ordered, recoverable chat across instances.

The core API (used by the gRPC transport here and by the WebSocket part):

``await send(stream_id, user_id, text, client_message_id, *, username="")``
    Publishes one message and returns it (``ChatMessage`` with offset, epoch, sent_at).
    A retry with the same ``client_message_id`` returns the first result and publishes
    nothing. Raises (reels.errors): INVALID_ARGUMENT (text empty, invisible or over
    ``max_message_chars`` code points after normalisation; client_message_id missing,
    over 64 characters or unprintable), NOT_FOUND (no such stream),
    FAILED_PRECONDITION (the stream is not live; ErrorInfo names its state),
    PERMISSION_DENIED (banned; timed out, RetryInfo = when it ends; followers-only),
    RESOURCE_EXHAUSTED (rate limit, slow mode; RetryInfo). Nothing is published on
    any refusal.

``subscribe(stream_id, user_id, *, recover=False, since_offset=0, epoch="")``
    A :class:`~svc_chat.chat.subscription.Subscription`: an async context manager
    (entering raises NOT_FOUND, PERMISSION_DENIED when banned, UNAVAILABLE when the
    hub cannot reach Redis) and an async iterator of ``SubscribeChatResponse``:
    ``joined``, then the missed publications when recovering, then live ones; it
    stops after a terminal notice (STREAM_ENDED, YOU_ARE_BANNED, SLOW_CONSUMER).

``await history(stream_id, *, limit=50, before_offset=0)``
    ``GetChatHistoryResponse``: up to ``limit`` (1..200) publications before
    ``before_offset`` (0 = the newest), oldest first. NOT_FOUND, INVALID_ARGUMENT.

``await moderate(stream_id, moderator_id, request)``
    ``ModerateChatResponse`` for a ``ModerateChatRequest``. NOT_FOUND (stream, or the
    message to delete is not in the history), PERMISSION_DENIED (not the creator or a
    moderator; moderators are named by the creator only; the creator cannot be
    moderated, a moderator only by the creator), INVALID_ARGUMENT.

``await stream_started(stream_id)`` / ``await stream_ended(stream_id)``
    Called by the streams part after the transition commits: publish STREAM_STARTED /
    STREAM_ENDED in the channel; every subscription on every instance ends after
    delivering STREAM_ENDED.

``await modes(stream_id)``
    (slow mode in seconds, followers-only) for LiveStream replies.

Design: Centrifugo's history and recovery (offset + epoch, one atomic Redis step per
publication: svc_chat.chat.channel), Owncast's hub with one bounded buffer per client
(svc_chat.chat.hub, svc_chat.chat.subscription), moderation in Redis
(svc_chat.chat.moderation), ``streams.chat`` effectively once (svc_chat.chat.relay).

Background loops (ctx.supervisor): ``chat-hub`` (required: the pub/sub reader),
``chat-housekeeping`` (idle channels, viewer touches), ``chat-relay`` (Kafka),
``chat-follows`` (engagement.events -> followers).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from reels.v1 import chat_pb2, common_pb2, events_pb2

from reels import errors
from reels.events import inject_trace_headers
from svc_chat.chat import notices, validation
from svc_chat.chat.channel import Channel, ChannelKeys
from svc_chat.chat.follows import Follows
from svc_chat.chat.hub import Hub
from svc_chat.chat.moderation import DOMAIN, Moderation
from svc_chat.chat.publication import MESSAGE, NOTICE
from svc_chat.chat.relay import Relay
from svc_chat.chat.subscription import Subscription
from svc_chat.chat.transport import GrpcTransport
from svc_chat.parts import Context
from svc_chat.streams.model import StreamInfo

log = logging.getLogger(__name__)

A = common_pb2
E = events_pb2
PRODUCER = "svc_chat"

_STATE_WORDS = {
    A.LIVE_STREAM_STATE_CREATED: "not live yet (created)",
    A.LIVE_STREAM_STATE_ENDED: "over (ended)",
}


class StreamNotLive(errors.FailedPrecondition):
    """FAILED_PRECONDITION naming the stream's state (ErrorInfo ``STREAM_NOT_LIVE``)."""

    def __init__(self, stream_id: str, state: int) -> None:
        words = _STATE_WORDS.get(state, A.LiveStreamState.Name(state))
        super().__init__(f"stream {stream_id} is {words}: chat is open only while it is live")
        self.state = state

    def details(self) -> list[object]:
        return [
            error_details_pb2.ErrorInfo(
                reason="STREAM_NOT_LIVE",
                domain=DOMAIN,
                metadata={"state": A.LiveStreamState.Name(self.state)},
            )
        ]


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment)
    return out


def _event(event_id: str, stream_id: str, **fields: object) -> events_pb2.ChatMessageEvent:
    """A streams.chat event without offset, epoch and sent_at (the Lua step adds them)."""
    meta = E.EventMeta(
        event_id=event_id,
        occurred_at=_timestamp(datetime.now(UTC)),
        trace_context=inject_trace_headers(),
        producer=PRODUCER,
    )
    return E.ChatMessageEvent(meta=meta, stream_id=stream_id, **fields)  # type: ignore[arg-type]


class ChatPart(GrpcTransport):
    """The chat core (module docstring) and its gRPC RPCs (svc_chat.chat.transport)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        s = ctx.settings.chat
        self.channel = Channel(ctx.redis, s)
        self.moderation = Moderation(self.channel, s)
        self.hub = Hub(
            ctx.redis,
            self.channel,
            s,
            touch_viewers=self._touch_viewers,
            stream_ended=self._has_ended,
        )
        self.relay = Relay(ctx.redis, s, bootstrap=ctx.settings.platform.kafka_bootstrap)
        self.follows = Follows(ctx.redis)

    async def start(self) -> None:
        add = self.ctx.supervisor.add
        add("chat-hub", self.hub.run, required=True, min_backoff_s=0.1, max_backoff_s=2.0)
        add("chat-housekeeping", self.hub.housekeeping)
        add("chat-relay", self.relay.run)
        add("chat-follows", self._run_follows)

    async def stop(self) -> None:
        await self.hub.close()

    async def _run_follows(self) -> None:
        platform = self.settings.platform
        await self.follows.run(
            bootstrap=platform.kafka_bootstrap,
            session_timeout_ms=platform.kafka_session_timeout_ms,
        )

    # ------------------------------------------------------------------ streams

    async def stream_info(self, stream_id: str) -> StreamInfo:
        """The stream's StreamInfo (svc_chat.streams), or NOT_FOUND."""
        stream_id = validation.stream_id(stream_id)
        info = await self.ctx.streams.info(stream_id)
        if info is None:
            raise errors.NotFound("live stream", stream_id)
        return info

    async def stream_started(self, stream_id: str) -> None:
        await self.channel.publish(
            ChannelKeys(stream_id), NOTICE, notices.stream_started(stream_id).SerializeToString()
        )

    async def stream_ended(self, stream_id: str) -> None:
        await self.channel.publish(
            ChannelKeys(stream_id), NOTICE, notices.stream_ended(stream_id).SerializeToString()
        )

    async def _has_ended(self, stream_id: str) -> bool:
        info = await self.ctx.streams.info(stream_id)
        return info is None or bool(info.ended)

    async def modes(self, stream_id: str) -> tuple[float, bool]:
        return await self.moderation.modes(ChannelKeys(stream_id))

    async def _touch_viewers(self, stream_id: str, users: list[str]) -> None:
        touch = getattr(self.ctx.streams, "touch_viewers", None)
        if touch is not None:
            await touch(stream_id, users)

    async def viewer_joined(self, stream_id: str, user_id: str) -> None:
        try:
            await self._touch_viewers(stream_id, [user_id])
        except Exception as exc:  # noqa: BLE001 - viewer counts must not stop chat
            log.warning("chat: counting viewer of %s failed: %r", stream_id, exc)

    async def viewer_left(self, stream_id: str, user_id: str) -> None:
        if user_id in self.hub.local_users(ChannelKeys(stream_id)):
            return  # another subscription of the same user is still here
        drop = getattr(self.ctx.streams, "drop_viewers", None)
        if drop is None:
            return
        try:
            await drop(stream_id, [user_id])
        except Exception as exc:  # noqa: BLE001
            log.warning("chat: dropping viewer of %s failed: %r", stream_id, exc)

    # ------------------------------------------------------------------ the core API

    async def send(
        self,
        stream_id: str,
        user_id: str,
        text: str,
        client_message_id: str,
        *,
        username: str = "",
    ) -> chat_pb2.ChatMessage:
        """Publish a message (module docstring for the rules and errors)."""
        stream_id = validation.stream_id(stream_id)
        text = validation.message_text(text, self.settings.chat.max_message_chars)
        client_message_id = validation.client_message_id(client_message_id)
        await validation.review_message(text)  # the text classifier, if one is configured
        info = await self.stream_info(stream_id)
        keys = ChannelKeys(stream_id)
        if not info.live:
            first = await self.moderation.first_result(keys, user_id, client_message_id)
            if first:
                return chat_pb2.ChatMessage.FromString(first)
            raise StreamNotLive(stream_id, info.state)
        message_id = uuid.uuid4().hex
        username = username or user_id
        message = chat_pb2.ChatMessage(
            message_id=message_id,
            stream_id=stream_id,
            user_id=user_id,
            text=text,
            client_message_id=client_message_id,
            username=username,
        )
        event = _event(
            message_id,
            stream_id,
            message_id=message_id,
            user_id=user_id,
            text=text,
            client_message_id=client_message_id,
            event_type=E.CHAT_EVENT_TYPE_MESSAGE,
            username=username,
        )
        accepted = await self.moderation.send(
            keys,
            user_id=user_id,
            creator_id=info.creator_id,
            client_message_id=client_message_id,
            message_id=message_id,
            payload=message.SerializeToString(),
            event=event.SerializeToString(),
        )
        return chat_pb2.ChatMessage.FromString(accepted.payload)

    def subscribe(
        self,
        stream_id: str,
        user_id: str,
        *,
        recover: bool = False,
        since_offset: int = 0,
        epoch: str = "",
    ) -> Subscription:
        """A subscription to enter and iterate (module docstring)."""
        return Subscription(
            self, stream_id, user_id, recover=recover, since_offset=since_offset, epoch=epoch
        )

    async def history(
        self, stream_id: str, *, limit: int = 50, before_offset: int = 0
    ) -> chat_pb2.GetChatHistoryResponse:
        """A page of the channel's history (module docstring)."""
        stream_id = validation.stream_id(stream_id)
        limit = validation.history_limit(limit)
        await self.stream_info(stream_id)
        page = await self.channel.page(ChannelKeys(stream_id), before_offset, limit)
        reply = chat_pb2.GetChatHistoryResponse(epoch=page.epoch, has_more=page.has_more)
        if page.has_more and page.publications:
            reply.next_before_offset = page.publications[0].offset
        reply.publications.extend(p.frame for p in page.publications)
        return reply

    async def moderate(
        self, stream_id: str, moderator_id: str, request: chat_pb2.ModerateChatRequest
    ) -> chat_pb2.ModerateChatResponse:
        """Apply one moderation action (module docstring)."""
        stream_id = validation.stream_id(stream_id)
        checked = validation.moderation(request)
        info = await self.stream_info(stream_id)
        creator = info.creator_id
        keys = ChannelKeys(stream_id)
        action = checked.action
        is_creator = moderator_id == creator
        if not is_creator and not await self.moderation.is_moderator(keys, moderator_id):
            raise errors.PermissionDenied(
                "only the stream's creator and the moderators they name can moderate its chat"
            )
        if action in (A.MODERATION_ACTION_ADD_MODERATOR, A.MODERATION_ACTION_REMOVE_MODERATOR):
            if not is_creator:
                raise errors.PermissionDenied("only the stream's creator names moderators")
        target = checked.user_id
        if target and action not in (
            A.MODERATION_ACTION_ADD_MODERATOR,
            A.MODERATION_ACTION_REMOVE_MODERATOR,
        ):
            if target == creator:
                raise errors.PermissionDenied("the stream's creator cannot be moderated")
            if not is_creator and await self.moderation.is_moderator(keys, target):
                raise errors.PermissionDenied("only the stream's creator can moderate a moderator")

        reply = chat_pb2.ModerateChatResponse(
            action=action, stream_id=stream_id, user_id=target, message_id=checked.message_id
        )
        publication_id = uuid.uuid4().hex
        common = {"moderator_id": moderator_id, "reason": checked.reason, "action": action}
        if action == A.MODERATION_ACTION_DELETE_MESSAGE:
            found = await self.channel.find_message(keys, checked.message_id)
            if found is None:
                raise errors.NotFound(
                    "chat message",
                    checked.message_id,
                    f"message {checked.message_id} is not in this stream's chat history",
                )
            offset, author = found
            notice = notices.message_deleted(stream_id, checked.message_id, offset)
            event = _event(
                publication_id,
                stream_id,
                message_id=checked.message_id,
                user_id=author,
                event_type=E.CHAT_EVENT_TYPE_MESSAGE_DELETED,
                **common,
            )
            op, state, subject, value = "delete", keys.deleted, "", str(offset)
        else:
            event_fields: dict[str, object] = {}
            if action == A.MODERATION_ACTION_MUTE_USER:
                notice = notices.user_muted(stream_id, target, checked.seconds)
                op, state, value = "mute", keys.mutes, str(int(checked.seconds * 1000))
                expires = datetime.now(UTC) + timedelta(seconds=checked.seconds)
                event_fields["expires_at"] = _timestamp(expires)
            elif action == A.MODERATION_ACTION_UNMUTE_USER:
                notice = notices.user_muted(stream_id, target, 0)
                op, state, value = "unmute", keys.mutes, ""
            elif action == A.MODERATION_ACTION_BAN_USER:
                notice = notices.user_banned(stream_id, target)
                op, state, value = "ban", keys.bans, ""
            elif action == A.MODERATION_ACTION_UNBAN_USER:
                notice = notices.user_unbanned(stream_id, target)
                op, state, value = "unban", keys.bans, ""
            elif action == A.MODERATION_ACTION_ADD_MODERATOR:
                notice = notices.moderator_changed(stream_id, target, True)
                op, state, value = "add_mod", keys.moderators, ""
            elif action == A.MODERATION_ACTION_REMOVE_MODERATOR:
                notice = notices.moderator_changed(stream_id, target, False)
                op, state, value = "remove_mod", keys.moderators, ""
            elif action == A.MODERATION_ACTION_SET_SLOW_MODE:
                notice = notices.slow_mode(stream_id, checked.seconds)
                op, state, value = "mode", keys.mode, str(int(checked.seconds * 1000))
                target = "slow"
            else:  # SET_FOLLOWERS_ONLY
                notice = notices.followers_only(stream_id, checked.enabled)
                op, state, value = "mode", keys.mode, "1" if checked.enabled else "0"
                target = "followers"
            subject = target
            event = _event(
                publication_id,
                stream_id,
                user_id=moderator_id,
                target_user_id=checked.user_id,
                event_type=E.CHAT_EVENT_TYPE_MODERATION,
                **common,
                **event_fields,
            )
        status, result_ms = await self.moderation.apply(
            keys,
            op,
            state_key=state,
            subject=subject,
            value=value,
            payload=notice.SerializeToString(),
            event=event.SerializeToString(),
        )
        if status == "gone":
            raise errors.NotFound(
                "chat message",
                checked.message_id,
                f"message {checked.message_id} is no longer in this stream's chat history",
            )
        if action == A.MODERATION_ACTION_MUTE_USER and result_ms:
            reply.expires_at.FromMilliseconds(result_ms)
        return reply


__all__ = ["ChatPart", "MESSAGE", "NOTICE", "StreamNotLive", "Subscription"]
