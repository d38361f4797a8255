"""Chat over gRPC across two svc_chat instances: real Postgres, Redis and Kafka (Tansu).

Two whole svc_chat Apps (``svc_chat.app.build``, served by ``reels.server.run_app`` with
JWT auth) share one database, one Redis prefix and one broker, as two replicas behind
Envoy would. Streams are created and started through their RPCs; every chat call is a
real gRPC call with a real token. One harness per module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives import serialization
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from reels.v1 import chat_pb2, chat_pb2_grpc, common_pb2, events_pb2

from reels import errors, topics
from reels.auth import ServiceTokenSigner
from reels.cache import delete_prefix, redis_client
from reels.db.engine import create_database, drop_database
from reels.db.migrate import migrate
from reels.events import EVENT_ID_HEADER, EventProducer
from reels.server import RunningServer, run_app
from reels_dev.keys import ensure_dev_keys
from svc_chat.app import App
from svc_chat.app import build as build_chat
from svc_chat.chat.channel import ChannelKeys
from svc_chat.chat.moderation import followers_key
from svc_chat.settings import Settings
from tests.fixtures.infra import TansuBroker, _test_database_url
from tests.polling import eventually

K = chat_pb2
A = common_pb2
TOPICS = (topics.STREAMS_CHAT.name, topics.STREAMS_EVENTS.name, topics.ENGAGEMENT_EVENTS.name)
QUEUE = 32


def chat_settings(*, database_url: str, kafka_bootstrap: str, redis_prefix: str) -> Settings:
    base = Settings.from_env()
    platform = dataclasses.replace(
        base.platform,
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        kafka_session_timeout_ms=3000,
        redis_prefix=redis_prefix,
        metrics_port=0,
    )
    return dataclasses.replace(
        base,
        platform=platform,
        chat=dataclasses.replace(base.chat, queue_size=QUEUE, relay_claim_idle_s=2.0),
        ws=dataclasses.replace(base.ws, port=0),
        ingest=dataclasses.replace(base.ingest, port=0),
    )


@functools.cache
def _signer() -> ServiceTokenSigner:
    """The dev signer with its key parsed once (PyJWT parses a PEM key on every token:
    ~40 ms for RSA, minutes over this module's few hundred users)."""
    signer = ServiceTokenSigner(ensure_dev_keys())
    pem = signer.config.private_key_path.read_bytes()
    signer._key = serialization.load_pem_private_key(pem, password=None)  # type: ignore[assignment]  # noqa: SLF001
    return signer


@dataclass
class Harness:
    apps: list[App]
    servers: list[RunningServer]
    channels: list[grpc.aio.Channel]
    kafka: TansuBroker
    prefix: str

    def stub(self, instance: int) -> chat_pb2_grpc.ChatServiceStub:
        return chat_pb2_grpc.ChatServiceStub(self.channels[instance])

    @staticmethod
    @functools.cache
    def auth(user: str, name: str | None = None) -> tuple[tuple[str, str], ...]:
        """Bearer metadata for ``user`` (one signer: the key is parsed once)."""
        claims = {"name": name} if name else None
        return (("authorization", f"Bearer {_signer().sign(user, extra_claims=claims)}"),)

    async def live_stream(self, creator: str | None = None, *, start: bool = True) -> str:
        creator = creator or f"creator-{uuid.uuid4().hex[:6]}"
        created = await self.stub(0).CreateStream(
            K.CreateStreamRequest(title="live chat test"), metadata=self.auth(creator), timeout=10
        )
        stream_id = created.stream.stream_id
        if start:  # on the instance that created it (the other loads it fresh)
            await self.stub(0).StartStream(
                K.StartStreamRequest(stream_id=stream_id), metadata=self.auth(creator), timeout=10
            )
        return stream_id

    async def send(
        self, instance: int, user: str, stream_id: str, text: str, key: str | None = None
    ) -> chat_pb2.ChatMessage:
        reply = await self.stub(instance).SendMessage(
            K.SendMessageRequest(
                stream_id=stream_id, text=text, client_message_id=key or uuid.uuid4().hex
            ),
            metadata=self.auth(user),
            timeout=10,
        )
        return reply.message

    def subscribe(self, instance: int, user: str, stream_id: str, **recovery: Any) -> Any:
        return self.stub(instance).SubscribeChat(
            K.SubscribeChatRequest(stream_id=stream_id, **recovery), metadata=self.auth(user)
        )

    async def moderate(self, instance: int, user: str, **request: Any) -> Any:
        return await self.stub(instance).ModerateChat(
            K.ModerateChatRequest(**request), metadata=self.auth(user), timeout=10
        )


@pytest.fixture(scope="module")
async def harness(kafka: TansuBroker) -> AsyncIterator[Harness]:
    ensure_dev_keys()
    url = _test_database_url()
    await create_database(url)
    await migrate(url)
    prefix = f"reels-test-{uuid.uuid4().hex[:8]}:"
    await kafka.create_topics(*TOPICS)
    settings = chat_settings(database_url=url, kafka_bootstrap=kafka.bootstrap, redis_prefix=prefix)
    apps = [build_chat(settings), build_chat(settings)]
    servers = [await run_app(app, port=0) for app in apps]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{s.port}") for s in servers]
    try:
        yield Harness(apps, servers, channels, kafka, prefix)
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(1.0)
        redis = redis_client()
        await delete_prefix(redis, prefix)
        await redis.aclose()
        await drop_database(url)


async def read(call: Any, count: int, within: float = 10.0) -> list[chat_pb2.SubscribeChatResponse]:
    out = []
    async with asyncio.timeout(within):
        while len(out) < count:
            frame = await call.read()
            if frame is grpc.aio.EOF:
                break
            out.append(frame)
    return out


async def read_to_end(call: Any, within: float = 10.0) -> list[Any]:
    out = []
    async with asyncio.timeout(within):
        while (frame := await call.read()) is not grpc.aio.EOF:
            out.append(frame)
    return out


def offsets(frames: list[Any]) -> list[int]:
    return [f.message.offset if f.HasField("message") else f.notice.offset for f in frames]


def details(exc: grpc.aio.AioRpcError) -> dict[str, Any]:
    return {type(d).__name__: d for d in errors.from_rpc_error(exc)}


# --------------------------------------------------------------------------- delivery


async def test_a_message_sent_on_a_reaches_subscribers_on_a_and_b(harness: Harness) -> None:
    sid = await harness.live_stream()
    on_a = harness.subscribe(0, "viewer-a", sid)
    on_b = harness.subscribe(1, "viewer-b", sid)
    joined = [(await read(c, 1))[0].joined for c in (on_a, on_b)]
    assert joined[0].epoch == joined[1].epoch and joined[0].offset == joined[1].offset
    reply = await harness.stub(0).SendMessage(
        K.SendMessageRequest(stream_id=sid, text="  hello\nboth ", client_message_id="m-1"),
        metadata=harness.auth("alice", name="Alice A."),
        timeout=10,
    )
    sent = reply.message
    assert (sent.text, sent.username, sent.user_id) == ("hello both", "Alice A.", "alice")
    for call in (on_a, on_b):
        (frame,) = await read(call, 1)
        assert frame.message == sent
        call.cancel()


async def test_ten_concurrent_senders_every_subscriber_sees_one_contiguous_order(
    harness: Harness,
) -> None:
    sid = await harness.live_stream()
    calls = [harness.subscribe(i % 2, f"watch-{i}", sid) for i in range(6)]
    starts = [(await read(c, 1))[0].joined.offset for c in calls]
    readers = [asyncio.create_task(read(c, 100)) for c in calls]

    async def sender(n: int) -> None:
        for i in range(10):
            await harness.send(n % 2, f"sender-{n}", sid, f"{n}/{i}")

    await asyncio.gather(*(sender(n) for n in range(10)))
    seen = [[(f.message.offset, f.message.text) for f in await r] for r in readers]
    first = starts[0]
    assert [o for o, _ in seen[0]] == list(range(first + 1, first + 101))
    assert all(s == seen[0] for s in seen)
    for call in calls:
        call.cancel()


async def test_100_subscribers_cut_off_during_500_messages_recover_all_then_not_after_a_flush(
    harness: Harness,
) -> None:
    sid = await harness.live_stream()
    calls = [harness.subscribe(i % 2, f"fan-{i}", sid) for i in range(100)]
    start = 0
    for call in calls:
        start = (await read(call, 1))[0].joined.offset  # 1: STREAM_STARTED
    for i in range(10):
        await harness.send(i % 2, f"early-{i}", sid, f"early {i}")
    positions = []
    for call in calls:
        got = await read(call, 10)
        positions.append((got[-1].message.offset, got[-1].message.epoch))
        call.cancel()  # the connection drops
    assert set(positions) == {(start + 10, positions[0][1])}
    last = start + 10

    async def burst(user: int) -> list[str]:
        return [
            (await harness.send(user % 2, f"burst-{user}", sid, f"{user}:{i}")).message_id
            for i in range(20)  # the rate limit: 20 per 30 s each
        ]

    sent = [m for ids in await asyncio.gather(*(burst(u) for u in range(25))) for m in ids]
    assert len(sent) == 500

    async def recover(i: int, offset: int, epoch: str) -> tuple[Any, list[Any]]:
        call = harness.subscribe(
            i % 2, f"fan-{i}", sid, recover=True, since_offset=offset, epoch=epoch
        )
        got = await read(call, 501, within=30)
        call.cancel()
        return got[0].joined, got[1:]

    results = await asyncio.gather(*(recover(i, *positions[i]) for i in range(100)))
    duplicates = 0
    for joined, missed in results:
        assert (joined.recovered, joined.missed, joined.offset) == (True, 500, last + 500)
        got = offsets(missed)
        duplicates += len(got) - len(set(got))
        assert got == list(range(last + 1, last + 501))
        assert sorted(f.message.message_id for f in missed) == sorted(sent)
    assert duplicates == 0

    keys = ChannelKeys(sid)  # Redis loses the channel
    await harness.apps[0].redis.delete(keys.meta, keys.history)
    flushed = await asyncio.gather(
        *(
            read(
                harness.subscribe(
                    i % 2,
                    f"fan-{i}",
                    sid,
                    recover=True,
                    since_offset=last + 500,
                    epoch=positions[i][1],
                ),
                1,
            )
            for i in range(100)
        )
    )
    for (frame,) in flushed:
        assert not frame.joined.recovered and frame.joined.epoch != positions[0][1]


async def test_a_retried_send_returns_the_first_message_and_publishes_once(
    harness: Harness,
) -> None:
    sid = await harness.live_stream()
    watcher = harness.subscribe(1, "watcher", sid)
    await read(watcher, 1)
    first = await harness.send(0, "retrier", sid, "once", key="same-key")
    again = await harness.send(1, "retrier", sid, "once", key="same-key")
    assert again == first
    await harness.send(0, "retrier", sid, "next", key="other-key")
    got = await read(watcher, 2)
    assert [f.message.text for f in got] == ["once", "next"]  # "once" was published once
    watcher.cancel()


async def test_a_subscriber_that_never_reads_is_dropped_and_the_others_keep_receiving(
    harness: Harness,
) -> None:
    sid = await harness.live_stream()
    # A client that stops reading: no BDP probing, so HTTP/2 flow control fills at once.
    stalled = grpc.aio.insecure_channel(
        f"127.0.0.1:{harness.servers[0].port}", options=[("grpc.http2.bdp_probe", 0)]
    )
    try:
        stuck = chat_pb2_grpc.ChatServiceStub(stalled).SubscribeChat(
            K.SubscribeChatRequest(stream_id=sid), metadata=harness.auth("stuck")
        )
        fine = harness.subscribe(0, "fine", sid)
        start = (await read(stuck, 1))[0].joined.offset
        await read(fine, 1)
        hub = harness.apps[0].ctx.chat.hub  # type: ignore[union-attr]
        dropped = hub.stats.slow_consumers
        reader = asyncio.create_task(read(fine, 300, within=60))
        text = "\U0001f600" * 500  # 500 characters, 2 kB
        for batch in range(15):  # 300 messages (600 kB) from 15 users
            await asyncio.gather(*(harness.send(1, f"flood-{batch}", sid, text) for _ in range(20)))
        got = await reader
        assert offsets(got) == list(range(start + 1, start + 301))  # the reader missed nothing
        assert hub.stats.slow_consumers == dropped + 1
        rest = await read_to_end(stuck)
    finally:
        # Even when an assertion fails: an open call on the shared loop outlives the test.
        await stalled.close()
    assert rest[-1].notice.kind == K.CHAT_NOTICE_KIND_SLOW_CONSUMER
    kept = offsets(rest[:-1])
    assert 0 < len(kept) < 300
    assert kept == list(range(start + 1, start + 1 + len(kept)))  # contiguous up to the drop
    assert f"since_offset={start + len(kept)}" in rest[-1].notice.text


# --------------------------------------------------------------------------- the Chat call


async def test_the_chat_call_answers_each_send_and_a_refusal_does_not_end_it(
    harness: Harness,
) -> None:
    sid = await harness.live_stream()
    requests: asyncio.Queue[chat_pb2.ChatRequest | None] = asyncio.Queue()

    async def frames() -> AsyncIterator[chat_pb2.ChatRequest]:
        while (item := await requests.get()) is not None:
            yield item

    call = harness.stub(1).Chat(frames(), metadata=harness.auth("bidi", name="Bidi"))
    await requests.put(K.ChatRequest(join=K.ChatJoin(stream_id=sid)))
    first = await call.read()
    assert first.HasField("joined")
    await requests.put(K.ChatRequest(send=K.ChatSend(text="", client_message_id="empty")))
    refused = await call.read()
    assert refused.sent.client_message_id == "empty"
    assert refused.sent.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "empty" in refused.sent.error
    await requests.put(K.ChatRequest(send=K.ChatSend(text="hi there", client_message_id="ok")))
    got = [await call.read(), await call.read()]
    kinds = sorted(f.WhichOneof("frame") for f in got)
    assert kinds == ["message", "sent"]
    sent = next(f.sent for f in got if f.HasField("sent"))
    pushed = next(f.message for f in got if f.HasField("message"))
    assert sent.message == pushed and pushed.username == "Bidi"
    other = await harness.send(0, "someone", sid, "from elsewhere")
    assert (await call.read()).message == other
    await requests.put(None)
    call.cancel()


async def test_a_message_with_a_blocked_term_is_refused_naming_the_text(
    harness: Harness,
) -> None:
    sid = await harness.live_stream()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.send(0, "cursing", sid, "well r33lsbl0ckedterm!!")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        'text: contains a blocked term (test: "r33lsbl0ckedterm"); edit it and try again'
    )
    (bad,) = errors.from_rpc_error(info.value)
    assert [v.field for v in bad.field_violations] == ["text"]  # type: ignore[attr-defined]
    assert (await harness.send(0, "polite", sid, "a classic, in Scunthorpe")).text


# --------------------------------------------------------------------------- moderation


async def test_rate_limit_slow_mode_and_timeout_hold_across_instances_with_retry_info(
    harness: Harness,
) -> None:
    creator = f"creator-{uuid.uuid4().hex[:6]}"
    sid = await harness.live_stream(creator)
    for i in range(20):
        await harness.send(i % 2, "chatty", sid, f"m{i}")
    with pytest.raises(grpc.aio.AioRpcError) as rate:
        await harness.send(0, "chatty", sid, "too much")
    assert rate.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = details(rate.value)
    assert info["ErrorInfo"].reason == "CHAT_RATE_LIMITED"
    assert 0 < info["RetryInfo"].retry_delay.seconds <= 30

    await harness.moderate(
        1,
        creator,
        stream_id=sid,
        action=A.MODERATION_ACTION_SET_SLOW_MODE,
        duration=duration_pb2.Duration(seconds=30),
    )
    await harness.send(0, "patient", sid, "one")
    with pytest.raises(grpc.aio.AioRpcError) as slow:
        await harness.send(1, "patient", sid, "two")
    assert slow.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(slow.value)["ErrorInfo"].reason == "CHAT_SLOW_MODE"
    assert "slow mode" in (slow.value.details() or "")

    muted = await harness.moderate(
        0,
        creator,
        stream_id=sid,
        action=A.MODERATION_ACTION_MUTE_USER,
        user_id="noisy",
        duration=duration_pb2.Duration(seconds=600),
    )
    assert muted.expires_at.seconds > 0
    with pytest.raises(grpc.aio.AioRpcError) as timeout:
        await harness.send(1, "noisy", sid, "hi")
    assert timeout.value.code() == grpc.StatusCode.PERMISSION_DENIED
    retry = details(timeout.value)["RetryInfo"].retry_delay.seconds
    assert 590 <= retry <= 600


async def test_a_ban_ends_the_users_subscription_on_the_other_instance_within_a_second(
    harness: Harness,
) -> None:
    creator = f"creator-{uuid.uuid4().hex[:6]}"
    sid = await harness.live_stream(creator)
    troll = harness.subscribe(1, "troll", sid)
    await read(troll, 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await harness.moderate(
        0, creator, stream_id=sid, action=A.MODERATION_ACTION_BAN_USER, user_id="troll"
    )
    rest = await read_to_end(troll, within=1.0)
    elapsed = loop.time() - started
    assert [f.notice.kind for f in rest] == [K.CHAT_NOTICE_KIND_YOU_ARE_BANNED]
    assert elapsed < 1.0
    with pytest.raises(grpc.aio.AioRpcError) as send:
        await harness.send(1, "troll", sid, "let me back")
    assert send.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await read(harness.subscribe(0, "troll", sid), 1)
    assert again.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as viewer:
        await harness.moderate(
            1, "troll", stream_id=sid, action=A.MODERATION_ACTION_BAN_USER, user_id="x"
        )
    assert viewer.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_followers_only_follows_arrive_from_engagement_events(harness: Harness) -> None:
    creator = f"creator-{uuid.uuid4().hex[:6]}"
    sid = await harness.live_stream(creator)
    await harness.moderate(
        0, creator, stream_id=sid, action=A.MODERATION_ACTION_SET_FOLLOWERS_ONLY, enabled=True
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.send(1, "fan", sid, "hi")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(refused.value)["ErrorInfo"].reason == "CHAT_FOLLOWERS_ONLY"
    follow = events_pb2.EngagementEvent(
        meta=events_pb2.EventMeta(event_id=str(uuid.uuid4())),
        type=events_pb2.ENGAGEMENT_TYPE_FOLLOW,
        user_id="fan",
        creator_id=creator,
    )
    async with EventProducer(harness.kafka.bootstrap) as producer:
        await producer.send(
            topics.ENGAGEMENT_EVENTS,
            creator,
            follow.SerializeToString(),
            {EVENT_ID_HEADER: follow.meta.event_id},
        )
    redis = harness.apps[0].redis

    async def following() -> bool:
        return bool(await redis.sismember(followers_key(creator), "fan"))

    await eventually(following, 30, "the follow did not reach svc_chat")
    assert (await harness.send(1, "fan", sid, "hi")).text == "hi"


# --------------------------------------------------------------------------- refusals


async def test_bad_input_is_refused_with_a_clear_reason_and_nothing_is_broadcast(
    harness: Harness,
) -> None:
    sid = await harness.live_stream()
    watcher = harness.subscribe(0, "watcher", sid)
    start = (await read(watcher, 1))[0].joined.offset
    cases = [
        ("", "message is empty"),
        ("x" * 501, "longer than 500 characters (got 501)"),
        ("\u200b\u200b", "message is empty"),
    ]
    for text, why in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.send(1, "u", sid, text)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert why in (caught.value.details() or "")
        violation = details(caught.value)["BadRequest"].field_violations[0]
        assert violation.field == "text"
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await harness.send(1, "u", str(uuid.uuid4()), "hi")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    created = await harness.live_stream(start=False)
    with pytest.raises(grpc.aio.AioRpcError) as not_live:
        await harness.send(0, "u", created, "hi")
    assert not_live.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(not_live.value)["ErrorInfo"].metadata["state"] == "LIVE_STREAM_STATE_CREATED"
    ok = await harness.send(1, "u", sid, "the only one")
    (frame,) = await read(watcher, 1)
    assert frame.message == ok and ok.offset == start + 1
    watcher.cancel()
    assert isinstance(error_details_pb2.RetryInfo(), object)


# --------------------------------------------------------------------------- lifecycle


async def test_ending_the_stream_ends_subscriptions_on_both_instances(harness: Harness) -> None:
    creator = f"creator-{uuid.uuid4().hex[:6]}"
    sid = await harness.live_stream(creator)
    calls = [harness.subscribe(i, f"v{i}", sid) for i in (0, 1)]
    for call in calls:
        await read(call, 1)
    await harness.stub(0).EndStream(
        K.EndStreamRequest(stream_id=sid), metadata=harness.auth(creator), timeout=10
    )
    for call in calls:
        rest = await read_to_end(call, within=3)
        assert rest[-1].notice.kind == K.CHAT_NOTICE_KIND_STREAM_ENDED
    history = await harness.stub(1).GetChatHistory(
        K.GetChatHistoryRequest(stream_id=sid), metadata=harness.auth("anyone"), timeout=10
    )
    kinds = [p.notice.kind for p in history.publications]
    assert kinds[-1] == K.CHAT_NOTICE_KIND_STREAM_ENDED
    assert K.CHAT_NOTICE_KIND_STREAM_STARTED in kinds


# --------------------------------------------------------------------------- Kafka


async def test_streams_chat_has_exactly_one_event_per_accepted_publication(
    harness: Harness,
) -> None:
    creator = f"creator-{uuid.uuid4().hex[:6]}"
    sid = await harness.live_stream(creator)
    accepted = []
    for i in range(30):
        accepted.append(await harness.send(i % 2, f"k-{i % 5}", sid, f"msg {i}", key=f"k{i}"))
    await harness.send(1, "k-0", sid, "msg 0", key="k0")  # a retry: no second event
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.send(0, "k-1", sid, "")  # refused: no event
    await harness.moderate(
        0,
        creator,
        stream_id=sid,
        action=A.MODERATION_ACTION_DELETE_MESSAGE,
        message_id=accepted[3].message_id,
    )
    await harness.moderate(
        1, creator, stream_id=sid, action=A.MODERATION_ACTION_BAN_USER, user_id="k-4"
    )
    expected_messages = {m.message_id for m in accepted}

    consumer = AIOKafkaConsumer(bootstrap_servers=harness.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    events: list[events_pb2.ChatMessageEvent] = []
    ids: list[str] = []
    try:
        parts = consumer.partitions_for_topic(topics.STREAMS_CHAT.name) or set()
        if not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topics.STREAMS_CHAT.name) or set()
        assignment = [TopicPartition(topics.STREAMS_CHAT.name, p) for p in parts]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)

        async def all_there() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    event = topics.STREAMS_CHAT.parse(record.value)
                    if event.stream_id == sid:
                        events.append(event)
                        ids.append(dict(record.headers)[EVENT_ID_HEADER].decode())
            return len(events) >= 32

        await eventually(all_there, 30, "streams.chat events")
        await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive now
        await all_there()
    finally:
        await consumer.stop()
    messages = [e for e in events if e.event_type == events_pb2.CHAT_EVENT_TYPE_MESSAGE]
    assert sorted(e.message_id for e in messages) == sorted(expected_messages)
    assert len(ids) == len(set(ids)) == 32
    by_id = {e.message_id: e for e in messages}
    for message in accepted:
        event = by_id[message.message_id]
        assert (event.offset, event.epoch, event.text) == (
            message.offset,
            message.epoch,
            message.text,
        )
        assert event.meta.event_id == message.message_id and event.username == message.user_id
    assert [e.offset for e in events] == sorted(e.offset for e in events)  # per-stream order
    deleted = [e for e in events if e.event_type == events_pb2.CHAT_EVENT_TYPE_MESSAGE_DELETED]
    assert [(e.message_id, e.user_id, e.moderator_id) for e in deleted] == [
        (accepted[3].message_id, accepted[3].user_id, creator)
    ]
    (ban,) = [e for e in events if e.event_type == events_pb2.CHAT_EVENT_TYPE_MODERATION]
    assert (ban.action, ban.target_user_id, ban.moderator_id) == (
        A.MODERATION_ACTION_BAN_USER,
        "k-4",
        creator,
    )
