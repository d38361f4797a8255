"""The chat core on a real Redis: two instances' chat parts (each with its own Redis
connections and hub), the streams part replaced by a table of StreamInfo.

Here the Redis-level guarantees are checked directly: the Lua step's order, epoch and
idempotency, the hub's gap refill (a publication pub/sub lost, a reconnect), recovery
and its limits, tombstones, and moderation held in Redis across instances. The gRPC
transports, Kafka and the real streams part are in test_chat_grpc.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from aiokafka.errors import KafkaTimeoutError
from google.protobuf import duration_pb2
from reels.v1 import chat_pb2, common_pb2

from reels import errors
from reels.cache import delete_prefix, redis_client, set_key_prefix
from reels.supervise import Supervisor
from svc_chat.chat import ChatPart, build
from svc_chat.chat.channel import ChannelKeys, relay_key
from svc_chat.chat.moderation import followers_key
from svc_chat.chat.relay import Relay
from svc_chat.chat.settings import ChatSettings
from svc_chat.chat.subscription import Subscription
from svc_chat.settings import Settings
from svc_chat.streams.model import StreamInfo
from tests.polling import eventually

K = chat_pb2
A = common_pb2
LIVE = A.LIVE_STREAM_STATE_LIVE


class FakeStreams:
    def __init__(self) -> None:
        self.streams: dict[str, StreamInfo] = {}
        self.touched: dict[str, set[str]] = {}

    async def info(self, stream_id: str) -> StreamInfo | None:
        return self.streams.get(stream_id)

    async def touch_viewers(self, stream_id: str, users: list[str]) -> None:
        self.touched.setdefault(stream_id, set()).update(users)

    async def drop_viewers(self, stream_id: str, users: list[str]) -> None:
        self.touched.setdefault(stream_id, set()).difference_update(users)


@dataclass
class Core:
    a: ChatPart
    b: ChatPart
    streams: FakeStreams
    supervisors: list[Supervisor]

    def new_stream(self, creator: str = "creator", state: int = LIVE) -> str:
        stream_id = uuid.uuid4().hex
        self.streams.streams[stream_id] = StreamInfo(stream_id, creator, "title", state)
        return stream_id


def _part(streams: FakeStreams, chat: ChatSettings) -> tuple[ChatPart, Supervisor]:
    base = Settings.from_env()
    supervisor = Supervisor(f"chat-{uuid.uuid4().hex[:4]}")
    ctx = SimpleNamespace(
        settings=dataclasses.replace(base, chat=chat),
        redis=redis_client(),
        supervisor=supervisor,
        streams=streams,
    )
    part = build(ctx)  # type: ignore[arg-type]
    supervisor.add("hub", part.hub.run, required=True, min_backoff_s=0.05)
    supervisor.add("housekeeping", part.hub.housekeeping)
    return part, supervisor


@pytest.fixture(scope="module")
async def core() -> AsyncIterator[Core]:
    prefix = f"reels-test-{uuid.uuid4().hex[:8]}:"
    set_key_prefix(prefix)
    streams = FakeStreams()
    chat = ChatSettings(queue_size=64, channel_linger_s=0.5, rate_limit=20, viewer_touch_s=0.5)
    a, sup_a = _part(streams, chat)
    b, sup_b = _part(streams, chat)
    for sup in (sup_a, sup_b):
        await sup.start()
    try:
        yield Core(a, b, streams, [sup_a, sup_b])
    finally:
        for part, sup in ((a, sup_a), (b, sup_b)):
            await part.stop()
            await sup.stop()
        redis = redis_client()
        await delete_prefix(redis, prefix)
        await redis.aclose()
        for part in (a, b):
            await part.ctx.redis.aclose()
        set_key_prefix(None)


async def frames(sub: Subscription, count: int, within: float = 5.0) -> list[Any]:
    out = []
    async with asyncio.timeout(within):
        while len(out) < count:
            out.append(await sub.__anext__())
    return out


def offsets(items: list[Any]) -> list[int]:
    out = []
    for f in items:
        if f.HasField("message"):
            out.append(f.message.offset)
        elif f.HasField("notice"):
            out.append(f.notice.offset)
    return out


# --------------------------------------------------------------------------- ordering


async def test_ten_concurrent_senders_on_two_instances_give_every_subscriber_one_order(
    core: Core,
) -> None:
    sid = core.new_stream()
    subs = [core.a.subscribe(sid, f"viewer-a{i}") for i in range(3)] + [
        core.b.subscribe(sid, f"viewer-b{i}") for i in range(3)
    ]
    for sub in subs:
        await sub.__aenter__()

    async def sender(n: int) -> None:
        part = core.a if n % 2 else core.b
        for i in range(10):
            await part.send(sid, f"sender-{n}", f"{n}:{i}", f"c{i}")

    readers = [asyncio.create_task(frames(sub, 101)) for sub in subs]  # read as they come
    await asyncio.gather(*(sender(n) for n in range(10)))
    seen = []
    for sub, reader in zip(subs, readers, strict=True):
        got = await reader
        assert got[0].HasField("joined")
        seen.append([(f.message.offset, f.message.text) for f in got[1:]])
        await sub.__aexit__(None, None, None)
    assert [o for o, _ in seen[0]] == list(range(1, 101))
    assert all(s == seen[0] for s in seen)  # one order, on both instances
    history = await core.a.history(sid, limit=200)
    assert [(p.message.offset, p.message.text) for p in history.publications] == seen[0]
    for n in range(10):  # each sender's own messages stay in its order
        mine = [t for _, t in seen[0] if t.startswith(f"{n}:")]
        assert mine == [f"{n}:{i}" for i in range(10)]


async def test_a_retried_send_returns_the_first_message_and_publishes_once(core: Core) -> None:
    sid = core.new_stream()
    first = await core.a.send(sid, "retrier", "hello", "key-1")
    again = await core.b.send(sid, "retrier", "hello (edited)", "key-1")
    assert again == first
    assert (first.offset, first.text, first.username) == (1, "hello", "retrier")
    assert first.sent_at.seconds > 0 and first.epoch
    other = await core.a.send(sid, "someone-else", "hello", "key-1")  # keys are per user
    assert other.offset == 2
    history = await core.a.history(sid)
    assert len(history.publications) == 2


# --------------------------------------------------------------------------- the hub


async def test_a_publication_pubsub_lost_is_refilled_from_the_history(core: Core) -> None:
    sid = core.new_stream()
    sub = core.b.subscribe(sid, "watcher")
    async with sub:
        await frames(sub, 1)
        await core.a.send(sid, "u", "one", "1")
        # Stored and numbered, but published on a topic nobody listens to: pub/sub "lost" it.
        keys = ChannelKeys(sid)
        channel = core.a.channel
        args = channel.channel_args(keys)
        args[0] = keys.pubsub + ":void"
        note = K.ChatNotice(kind=K.CHAT_NOTICE_KIND_MODE_CHANGED, stream_id=sid, text="lost")
        await channel._publish(  # noqa: SLF001
            keys=channel.channel_keys(keys), args=[*args, "n", note.SerializeToString(), b""]
        )
        await core.a.send(sid, "u", "three", "3")
        got = await frames(sub, 3)
    assert offsets(got) == [1, 2, 3]
    assert got[1].notice.text == "lost"
    assert core.b.hub.stats.refilled >= 1


async def test_what_was_published_while_the_hub_was_disconnected_is_refilled(
    core: Core,
) -> None:
    sid = core.new_stream()
    sub = core.b.subscribe(sid, "watcher")
    async with sub:
        await frames(sub, 1)
        await core.a.send(sid, "u", "before", "0")
        assert offsets(await frames(sub, 1)) == [1]
        supervisor = core.supervisors[1]
        loop = supervisor._loops.pop("hub")  # noqa: SLF001
        assert loop.task is not None
        loop.task.cancel()  # the reader and its pub/sub connection go away
        await asyncio.wait([loop.task])
        refilled = core.b.hub.stats.refilled
        for i in range(5):
            await core.a.send(sid, "u", f"during {i}", f"d{i}")
        supervisor.add("hub", core.b.hub.run, required=True)  # connects and resubscribes
        got = await frames(sub, 5, within=10)
    assert offsets(got) == [2, 3, 4, 5, 6]
    assert core.b.hub.stats.refilled == refilled + 5


async def test_a_killed_pubsub_connection_reconnects_and_nothing_is_lost(core: Core) -> None:
    sid = core.new_stream()
    sub = core.b.subscribe(sid, "watcher")
    async with sub:
        await frames(sub, 1)
        await core.a.send(sid, "u", "before", "0")
        await frames(sub, 1)
        writer = core.b.hub.pubsub.connection._writer  # noqa: SLF001
        host, port = writer.get_extra_info("sockname")[:2]
        # Exactly this instance's pub/sub connection (the Redis is shared).
        await core.a.ctx.redis.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        for i in range(5):
            await core.a.send(sid, "u", f"after {i}", f"a{i}")
        got = await frames(sub, 5, within=10)
    assert offsets(got) == [2, 3, 4, 5, 6]


async def test_a_subscriber_that_never_reads_is_dropped_and_the_others_keep_receiving(
    core: Core,
) -> None:
    sid = core.new_stream()
    stuck = core.a.subscribe(sid, "stuck")
    fine = core.a.subscribe(sid, "fine")
    await stuck.__aenter__()
    await fine.__aenter__()
    await frames(fine, 1)
    reader = asyncio.create_task(frames(fine, 80))
    for i in range(80):  # queue_size is 64
        await core.b.send(sid, f"u{i % 8}", f"m{i}", f"c{i}")
    got = await reader
    assert offsets(got) == list(range(1, 81))
    left = await frames(stuck, 2)
    assert left[0].HasField("joined")
    assert left[1].notice.kind == K.CHAT_NOTICE_KIND_SLOW_CONSUMER
    assert "since_offset=0" in left[1].notice.text
    with pytest.raises(StopAsyncIteration):
        await stuck.__anext__()
    for sub in (stuck, fine):
        await sub.__aexit__(None, None, None)


# --------------------------------------------------------------------------- recovery


async def test_recovery_returns_exactly_the_missed_publications_then_live(core: Core) -> None:
    sid = core.new_stream()
    first = await core.a.send(sid, "u", "seen", "0")
    for i in range(1, 6):
        await core.b.send(sid, "u", f"missed {i}", f"{i}")
    sub = core.a.subscribe(sid, "back", recover=True, since_offset=first.offset, epoch=first.epoch)
    async with sub:
        joined = (await frames(sub, 1))[0].joined
        assert (joined.recovered, joined.missed, joined.offset) == (True, 5, 6)
        missed = await frames(sub, 5)
        await core.b.send(sid, "u", "live", "live")
        live = await frames(sub, 1)
    assert offsets(missed + live) == [2, 3, 4, 5, 6, 7]
    assert [f.message.text for f in missed] == [f"missed {i}" for i in range(1, 6)]


async def test_recovery_is_refused_explicitly_when_history_or_epoch_is_gone(
    core: Core,
) -> None:
    sid = core.new_stream()
    first = await core.a.send(sid, "u", "x", "0")
    # Another epoch: the client's is from somewhere else.
    sub = core.a.subscribe(sid, "v", recover=True, since_offset=1, epoch="not-the-epoch")
    async with sub:
        joined = (await frames(sub, 1))[0].joined
    assert not joined.recovered and joined.missed == 0 and joined.epoch == first.epoch
    # The history was trimmed past the client's offset (history_size 5 on this instance).
    small, sup = _part(core.streams, ChatSettings(history_size=5))
    await sup.start()
    try:
        for i in range(300):  # MAXLEN ~ trims in whole nodes of 100 entries
            await small.send(sid, f"u{i % 20}", f"m{i}", f"t{i}")
        sub = small.subscribe(sid, "v", recover=True, since_offset=1, epoch=first.epoch)
        async with sub:
            joined = (await frames(sub, 1))[0].joined
        assert not joined.recovered and joined.offset == 301
    finally:
        await sup.stop()
        await small.ctx.redis.aclose()
    # Redis lost the channel: a new epoch, and offsets start again.
    keys = ChannelKeys(sid)
    await core.a.ctx.redis.delete(keys.meta, keys.history)
    sub = core.b.subscribe(sid, "v", recover=True, since_offset=301, epoch=first.epoch)
    async with sub:
        joined = (await frames(sub, 1))[0].joined
        assert not joined.recovered and joined.epoch != first.epoch and joined.offset == 0
        fresh = await core.a.send(sid, "u", "new epoch", "n")
        assert (fresh.offset, fresh.epoch) == (1, joined.epoch)
        assert offsets(await frames(sub, 1)) == [1]


async def test_a_deleted_message_is_a_tombstone_live_in_history_and_in_recovery(
    core: Core,
) -> None:
    sid = core.new_stream(creator="boss")
    sub = core.b.subscribe(sid, "watcher")
    async with sub:
        await frames(sub, 1)
        rude = await core.a.send(sid, "troll", "something rude", "r")
        await core.a.send(sid, "nice", "hello", "h")
        reply = await core.b.moderate(
            sid,
            "boss",
            K.ModerateChatRequest(
                action=A.MODERATION_ACTION_DELETE_MESSAGE, message_id=rude.message_id
            ),
        )
        assert reply.message_id == rude.message_id
        got = await frames(sub, 3)
    tombstone = got[2].notice
    assert tombstone.kind == K.CHAT_NOTICE_KIND_MESSAGE_DELETED
    assert (tombstone.offset, tombstone.target_offset) == (3, 1)
    history = await core.a.history(sid)
    assert offsets(list(history.publications)) == [1, 2, 3]
    assert history.publications[0].notice.kind == K.CHAT_NOTICE_KIND_MESSAGE_DELETED
    assert "rude" not in str(history)
    again = core.a.subscribe(sid, "late", recover=True, since_offset=0, epoch=rude.epoch)
    async with again:
        recovered = await frames(again, 4)
    assert recovered[0].joined.recovered and "rude" not in str(recovered)
    with pytest.raises(errors.NotFound):
        await core.a.moderate(
            sid,
            "boss",
            K.ModerateChatRequest(action=A.MODERATION_ACTION_DELETE_MESSAGE, message_id="nope"),
        )


async def test_history_pages_backwards_with_a_cursor(core: Core) -> None:
    sid = core.new_stream()
    for i in range(7):
        await core.a.send(sid, f"u{i}", f"m{i}", "c")
    page = await core.b.history(sid, limit=3)
    assert offsets(list(page.publications)) == [5, 6, 7]
    assert page.has_more and page.next_before_offset == 5
    page = await core.b.history(sid, limit=3, before_offset=page.next_before_offset)
    assert offsets(list(page.publications)) == [2, 3, 4]
    page = await core.b.history(sid, limit=3, before_offset=page.next_before_offset)
    assert offsets(list(page.publications)) == [1]
    assert not page.has_more and page.next_before_offset == 0


# --------------------------------------------------------------------------- moderation


def _code(exc: BaseException) -> grpc.StatusCode:
    assert isinstance(exc, errors.ReelsError)
    return exc.code


async def test_the_rate_limit_holds_across_instances_and_says_when(core: Core) -> None:
    sid = core.new_stream(creator="boss")
    for i in range(20):
        await (core.a if i % 2 else core.b).send(sid, "chatty", f"m{i}", f"c{i}")
    with pytest.raises(errors.ResourceExhausted) as caught:
        await core.a.send(sid, "chatty", "one more", "c20")
    assert "20 messages per 30 s" in caught.value.message
    assert 0 < caught.value.retry_after_seconds <= 30  # type: ignore[operator]
    for i in range(30):  # the creator's limit is higher
        await core.b.send(sid, "boss", f"b{i}", f"b{i}")
    history = await core.a.history(sid, limit=200)
    assert len(history.publications) == 50  # nothing was published for the refusal


async def test_slow_mode_and_timeouts_hold_across_instances(core: Core) -> None:
    sid = core.new_stream(creator="boss")
    await core.a.moderate(
        sid,
        "boss",
        K.ModerateChatRequest(
            action=A.MODERATION_ACTION_SET_SLOW_MODE, duration=duration_pb2.Duration(seconds=10)
        ),
    )
    assert await core.b.modes(sid) == (10.0, False)
    await core.a.send(sid, "u", "first", "1")
    with pytest.raises(errors.ResourceExhausted) as slow:
        await core.b.send(sid, "u", "second", "2")
    assert "slow mode" in slow.value.message and 9 < slow.value.retry_after_seconds <= 10  # type: ignore[operator]
    await core.b.send(sid, "boss", "the creator is exempt", "b1")
    await core.b.send(sid, "boss", "twice", "b2")

    reply = await core.b.moderate(
        sid,
        "boss",
        K.ModerateChatRequest(
            action=A.MODERATION_ACTION_MUTE_USER,
            user_id="noisy",
            duration=duration_pb2.Duration(seconds=120),
        ),
    )
    assert reply.expires_at.seconds > 0
    with pytest.raises(errors.PermissionDenied) as muted:
        await core.a.send(sid, "noisy", "hi", "n1")
    assert "timed out" in muted.value.message
    assert 110 < muted.value.retry_after_seconds <= 120  # type: ignore[attr-defined]
    await core.a.moderate(
        sid, "boss", K.ModerateChatRequest(action=A.MODERATION_ACTION_UNMUTE_USER, user_id="noisy")
    )
    assert (await core.b.send(sid, "noisy", "hi again", "n2")).text == "hi again"


async def test_a_ban_ends_the_users_subscription_on_the_other_instance_within_a_second(
    core: Core,
) -> None:
    sid = core.new_stream(creator="boss")
    # The creator names a moderator, who bans on instance A; the troll watches on B.
    await core.a.moderate(
        sid, "boss", K.ModerateChatRequest(action=A.MODERATION_ACTION_ADD_MODERATOR, user_id="mod")
    )
    troll = core.b.subscribe(sid, "troll")
    other = core.b.subscribe(sid, "other")
    async with troll, other:
        await frames(troll, 1)
        await frames(other, 1)
        started = asyncio.get_running_loop().time()
        await core.a.moderate(
            sid, "mod", K.ModerateChatRequest(action=A.MODERATION_ACTION_BAN_USER, user_id="troll")
        )
        last = await frames(troll, 1, within=1.0)
        elapsed = asyncio.get_running_loop().time() - started
        assert last[-1].notice.kind == K.CHAT_NOTICE_KIND_YOU_ARE_BANNED
        with pytest.raises(StopAsyncIteration):
            await troll.__anext__()
        seen = await frames(other, 1)
    assert elapsed < 1.0
    assert seen[0].notice.kind == K.CHAT_NOTICE_KIND_USER_BANNED
    with pytest.raises(errors.PermissionDenied, match="banned"):
        await core.b.send(sid, "troll", "let me in", "t")
    with pytest.raises(errors.PermissionDenied, match="banned"):
        async with core.a.subscribe(sid, "troll"):
            pass
    with pytest.raises(errors.PermissionDenied, match="creator"):  # mods cannot name mods
        await core.a.moderate(
            sid,
            "mod",
            K.ModerateChatRequest(action=A.MODERATION_ACTION_ADD_MODERATOR, user_id="x"),
        )
    with pytest.raises(errors.PermissionDenied):  # nobody moderates the creator
        await core.a.moderate(
            sid, "mod", K.ModerateChatRequest(action=A.MODERATION_ACTION_BAN_USER, user_id="boss")
        )
    with pytest.raises(errors.PermissionDenied):  # viewers do not moderate
        await core.a.moderate(
            sid, "other", K.ModerateChatRequest(action=A.MODERATION_ACTION_BAN_USER, user_id="y")
        )
    await core.b.moderate(
        sid, "boss", K.ModerateChatRequest(action=A.MODERATION_ACTION_UNBAN_USER, user_id="troll")
    )
    assert (await core.a.send(sid, "troll", "sorry", "t2")).text == "sorry"


async def test_followers_only_refuses_non_followers_until_they_follow(core: Core) -> None:
    creator = f"creator-{uuid.uuid4().hex[:6]}"
    sid = core.new_stream(creator=creator)
    await core.a.moderate(
        sid,
        creator,
        K.ModerateChatRequest(action=A.MODERATION_ACTION_SET_FOLLOWERS_ONLY, enabled=True),
    )
    with pytest.raises(errors.PermissionDenied, match=f"follow {creator}"):
        await core.b.send(sid, "stranger", "hi", "1")
    await core.a.ctx.redis.sadd(followers_key(creator), "stranger")
    assert (await core.b.send(sid, "stranger", "hi", "1")).offset == 2


# --------------------------------------------------------------------------- lifecycle


async def test_refused_sends_publish_nothing_and_say_why(core: Core) -> None:
    sid = core.new_stream()
    sub = core.a.subscribe(sid, "watcher")
    async with sub:
        await frames(sub, 1)
        for text, why in [("", "empty"), ("x" * 501, "longer than 500"), ("\u200b", "empty")]:
            with pytest.raises(errors.InvalidArgument, match=why):
                await core.b.send(sid, "u", text, "c")
        with pytest.raises(errors.NotFound):
            await core.b.send("no-such-stream", "u", "hi", "c")
        created = core.new_stream(state=A.LIVE_STREAM_STATE_CREATED)
        with pytest.raises(errors.FailedPrecondition, match="not live yet"):
            await core.b.send(created, "u", "hi", "c")
        await core.b.send(sid, "u", "fine", "ok")
        assert offsets(await frames(sub, 1)) == [1]  # the first thing published


async def test_stream_ended_ends_every_subscription_on_every_instance(core: Core) -> None:
    sid = core.new_stream()
    subs = [core.a.subscribe(sid, "x"), core.b.subscribe(sid, "y")]
    for sub in subs:
        await sub.__aenter__()
        await frames(sub, 1)
    await core.a.send(sid, "u", "bye", "b")
    core.streams.streams[sid] = dataclasses.replace(
        core.streams.streams[sid], state=A.LIVE_STREAM_STATE_ENDED
    )
    await core.a.stream_ended(sid)
    for sub in subs:
        got = await frames(sub, 2)
        assert got[1].notice.kind == K.CHAT_NOTICE_KIND_STREAM_ENDED
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()
        await sub.__aexit__(None, None, None)
    late = core.b.subscribe(sid, "late")  # joining an ended stream: joined, then the end
    async with late:
        got = [f async for f in late]
    assert got[0].HasField("joined") and got[1].notice.kind == K.CHAT_NOTICE_KIND_STREAM_ENDED


async def test_a_stream_that_ended_without_its_notice_still_ends_its_subscriptions(
    core: Core,
) -> None:
    sid = core.new_stream()
    sub = core.b.subscribe(sid, "x")
    async with sub:
        await frames(sub, 1)
        await core.a.send(sid, "u", "last words", "l")
        core.streams.streams[sid] = dataclasses.replace(  # ended; the hook never ran
            core.streams.streams[sid], state=A.LIVE_STREAM_STATE_ENDED
        )
        got = await frames(sub, 2, within=3)
        assert got[0].message.text == "last words"
        assert got[1].notice.kind == K.CHAT_NOTICE_KIND_STREAM_ENDED
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()


async def test_subscribers_count_as_viewers_and_leave_when_they_go(core: Core) -> None:
    sid = core.new_stream()
    sub = core.a.subscribe(sid, "viewer-1")
    async with sub:
        assert core.streams.touched[sid] == {"viewer-1"}
    assert core.streams.touched[sid] == set()
    await eventually(
        lambda: _async(ChannelKeys(sid).pubsub not in core.a.hub.channels),
        5,
        "the idle channel was not left after the linger",
    )


async def _async(value: bool) -> bool:
    return value


# --------------------------------------------------------------------------- relay


class FakeProducer:
    """Accepts events until ``fail_at`` (then refuses that one and the rest)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.sent: list[str] = []

    async def send_many(self, events: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i, event in enumerate(events):
            if self.fail_at is not None and i >= self.fail_at:
                out.append(KafkaTimeoutError())
                continue
            self.sent.append(event.headers["event-id"])
            out.append(object())
        return out


async def test_the_relay_hands_over_unacknowledged_events_in_order_and_acks_only_sent_ones(
    core: Core,
) -> None:
    redis = core.a.ctx.redis
    await redis.delete(relay_key())
    sid = core.new_stream()
    sent = [await core.a.send(sid, f"r{i}", f"m{i}", f"c{i}") for i in range(10)]
    expected = [m.message_id for m in sent]  # a message's event id is its message id
    settings = ChatSettings(relay_batch=100)
    dead = Relay(redis, settings, bootstrap="-", instance="dead")
    heir = Relay(redis, settings, bootstrap="-", instance="heir")
    assert await dead._lead() and not await heir._lead()  # noqa: SLF001
    await dead._ensure_group()  # noqa: SLF001
    assert len(await dead._read(">")) == 10  # noqa: SLF001 - read, then it "crashes"
    await dead._resign()  # noqa: SLF001 - (or its lease lapses)
    assert await heir._lead()  # noqa: SLF001
    await heir._claim(0)  # noqa: SLF001
    assert heir.stats.claimed == 10
    flaky = FakeProducer(fail_at=4)
    await heir._send(flaky, await heir._read("0"))  # noqa: SLF001
    assert flaky.sent == expected[:4]
    assert await redis.xlen(relay_key()) == 6  # acknowledged ones are deleted
    good = FakeProducer()
    await heir._send(good, await heir._read("0"))  # noqa: SLF001 - the rest, in order
    assert good.sent == expected[4:]
    assert await heir._read("0") == [] and await redis.xlen(relay_key()) == 0  # noqa: SLF001
    await heir._resign()  # noqa: SLF001
