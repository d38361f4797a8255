"""The chat WebSocket's JSON protocol, without I/O: client frames in, server frames out,
the query that asks for recovery, and the close codes a client can act on.

Client → server (text frames, JSON objects; both spellings of a field are read, as the
JSON API reads both):

* ``{"type": "send", "text": "...", "client_message_id": "..."}`` — post a message; the
  idempotency key makes a retried send return the first result (SendMessage's rule);
* ``{"type": "ack", "offset": n}`` — the client has everything up to ``n``;
* ``{"type": "ping"}`` — answered ``{"type": "pong"}`` (browsers cannot send WebSocket
  pings; the server's own pings keep the socket alive either way).

Server → client: every SubscribeChatResponse frame as the JSON API prints it (protobuf
JSON, camelCase, 64-bit numbers as strings) with a ``type``: ``joined`` first, then
``message`` and ``notice`` frames in offset order; per send, ``sent`` (the accepted
message) or ``error`` (``code`` is the gRPC status name SendMessage would have
answered, with ``message``, the ErrorInfo ``reason`` when there is one (``CHAT_BANNED``,
``CHAT_TIMED_OUT``...), ``retryAfterSeconds`` when trying again later can work, and
``fieldViolations``). A frame the server cannot read gets an ``error`` frame too;
nothing a client sends ends the socket but a frame over the hard size limit (1009)
or a long run of unreadable frames (1008).

Close codes (RFC 6455 section 7.4.1; 4000-4999 are for applications, section 7.4.2),
each with a reason a person can read (:data:`CLOSE_REASONS`):

* 1000 the stream ended: stop;
* 1001 this server is restarting: reconnect with ``recover=1&since_offset=<last
  offset>&epoch=<epoch>`` (another instance serves it);
* 1008 too many unreadable frames in a row (a broken client: fix it, do not retry);
* 1009 a frame over the hard size limit;
* 1011 the server failed; 1013 a backing service is down: reconnect with recovery
  after a pause;
* 4003 the user was banned from this chat: do not reconnect;
* 4008 the client fell behind (its queue filled): reconnect at once with recovery
  and read faster; nothing is lost while the history covers the gap.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from reels.v1 import chat_pb2

from reels import errors
from reels.http_errors import OUTAGE_RETRY_AFTER_S, http_error

# The subprotocol a client offers (and the server selects) on every chat socket; a JWT
# rides beside it as ``bearer.<jwt>``, never echoed back.
SUBPROTOCOL = "reels.chat.v1"
BEARER_PROTOCOL_PREFIX = "bearer."
MAX_EPOCH_CHARS = 128
MAX_TICKET_CHARS = 128
UINT64_MAX = 2**64 - 1

# RFC 6455 section 7.4.1 (and IANA's 1013), plus the application codes above.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_BANNED = 4003
CLOSE_SLOW_CONSUMER = 4008

# A close frame's payload is at most 125 bytes, two of them the code (RFC 6455 5.5).
CLOSE_REASONS: Mapping[int, str] = {
    CLOSE_NORMAL: "stream ended",
    CLOSE_GOING_AWAY: "server restarting: reconnect with recover, since_offset and epoch",
    CLOSE_POLICY_VIOLATION: "too many unreadable frames",
    CLOSE_MESSAGE_TOO_BIG: "frame too large",
    CLOSE_INTERNAL_ERROR: "internal error: reconnect with recover, since_offset and epoch",
    CLOSE_TRY_AGAIN_LATER: "chat unavailable: reconnect with recover after a pause",
    CLOSE_BANNED: "banned from this chat",
    CLOSE_SLOW_CONSUMER: "slow consumer: resubscribe with since_offset and epoch",
}

# A subscription that ends after one of these notices closes the socket with its code.
_TERMINAL: Mapping[int, int] = {
    chat_pb2.CHAT_NOTICE_KIND_STREAM_ENDED: CLOSE_NORMAL,
    chat_pb2.CHAT_NOTICE_KIND_YOU_ARE_BANNED: CLOSE_BANNED,
    chat_pb2.CHAT_NOTICE_KIND_SLOW_CONSUMER: CLOSE_SLOW_CONSUMER,
}


def close_for(last: chat_pb2.SubscribeChatResponse | None) -> int:
    """The close code after a subscription ended with frame ``last`` (None: no frame).

    A terminal notice (stream ended, banned, slow consumer) names its code; a
    subscription that ended without one was ended by the server (a restart): 1001.
    """
    if last is not None and last.WhichOneof("event") == "notice":
        return _TERMINAL.get(last.notice.kind, CLOSE_GOING_AWAY)
    return CLOSE_GOING_AWAY


# --------------------------------------------------------------------------- client frames


class FrameError(errors.InvalidArgument):
    """A client frame the server cannot act on (answered with an error frame)."""


@dataclass(frozen=True)
class Send:
    text: str
    client_message_id: str


@dataclass(frozen=True)
class Ack:
    offset: int


@dataclass(frozen=True)
class Ping:
    pass


ClientFrame = Send | Ack | Ping
CLIENT_TYPES = ("send", "ack", "ping")


def _field(frame: Mapping[str, Any], snake: str, camel: str) -> Any:
    return frame[snake] if snake in frame else frame.get(camel)


def _offset(value: Any, name: str) -> int:
    """A uint64 from JSON: a number or a string of digits (protobuf JSON writes uint64
    as a string, so a client echoing an offset it was sent must be understood)."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= UINT64_MAX:
        raise FrameError(
            f"{name} must be a non-negative integer", [(name, "a non-negative integer")]
        )
    return value


def parse_client_frame(raw: str, max_bytes: int) -> ClientFrame:
    """The client frame in text frame ``raw``; FrameError says what is wrong with it.

    ``max_bytes`` bounds the UTF-8 size before JSON is parsed: the longest valid send
    (500 characters, each at most 12 bytes as a JSON escape pair) fits 8 KiB with room.
    """
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise FrameError(
            f"frame of {size} bytes is over the limit of {max_bytes} bytes",
            [("frame", f"at most {max_bytes} bytes")],
        )
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise FrameError(
            "frame is not JSON: send a JSON object with a type",
            [("frame", "a JSON object")],
        ) from exc
    if not isinstance(frame, dict):
        raise FrameError("frame must be a JSON object with a type", [("frame", "a JSON object")])
    kind = frame.get("type")
    if kind == "send":
        text = frame.get("text")
        if not isinstance(text, str):
            raise FrameError("send needs text, a string", [("text", "a string")])
        cmid = _field(frame, "client_message_id", "clientMessageId")
        if cmid is None:
            cmid = ""
        if not isinstance(cmid, str):
            raise FrameError(
                "client_message_id must be a string", [("client_message_id", "a string")]
            )
        return Send(text=text, client_message_id=cmid)
    if kind == "ack":
        return Ack(offset=_offset(frame.get("offset"), "offset"))
    if kind == "ping":
        return Ping()
    shown = json.dumps(kind)[:40] if kind is not None else "none"
    raise FrameError(
        f"unknown frame type {shown}: use one of {', '.join(CLIENT_TYPES)}",
        [("type", f"one of {', '.join(CLIENT_TYPES)}")],
    )


# --------------------------------------------------------------------------- the query


@dataclass(frozen=True)
class SubscribeQuery:
    """What the socket's query asks of the subscription (SubscribeChatRequest's fields)."""

    recover: bool = False
    since_offset: int = 0
    epoch: str = ""


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def subscribe_query(query: Mapping[str, str]) -> SubscribeQuery:
    """``recover``, ``since_offset`` and ``epoch`` from the socket's query string.

    ``since_offset`` alone implies ``recover`` (a client that names where it stopped
    wants what it missed); ``recover=0`` with it asks for live messages only. Anything
    malformed is InvalidArgument (400 before the upgrade).
    """
    violations: list[tuple[str, str]] = []
    since = 0
    raw_since = query.get("since_offset", query.get("sinceOffset"))
    if raw_since is not None:
        if raw_since.isascii() and raw_since.isdigit() and int(raw_since) <= UINT64_MAX:
            since = int(raw_since)
        else:
            violations.append(("since_offset", "a non-negative integer"))
    raw_recover = query.get("recover")
    recover = raw_since is not None
    if raw_recover is not None:
        low = raw_recover.strip().lower()
        if low in _TRUE:
            recover = True
        elif low in _FALSE:
            recover = False
        else:
            violations.append(("recover", "1/0, true/false"))
    epoch = query.get("epoch", "")
    if len(epoch) > MAX_EPOCH_CHARS or not epoch.isprintable():
        violations.append(("epoch", f"at most {MAX_EPOCH_CHARS} printable characters"))
    if violations:
        raise errors.InvalidArgument(
            "bad query: " + "; ".join(f"{f} must be {d}" for f, d in violations), violations
        )
    return SubscribeQuery(recover=recover, since_offset=since, epoch=epoch)


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credential:
    """What the handshake offers to authenticate with."""

    kind: str  # "ticket" or "bearer"
    value: str


def offered_protocols(header: str | None) -> list[str]:
    """``Sec-WebSocket-Protocol``'s values (RFC 6455 4.1: a comma list of tokens)."""
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def credential_of(
    query: Mapping[str, str], protocols: list[str], authorization: str | None
) -> Credential | None:
    """The handshake's credential: ``?ticket=`` first, then ``bearer.<jwt>`` among the
    offered subprotocols (browsers), then an ``Authorization: Bearer`` header (other
    clients); None when there is none (401).

    A bearer subprotocol needs :data:`SUBPROTOCOL` beside it: the server must select one
    offered subprotocol, and a browser fails a socket whose server selected none; the
    token itself is never selected (it would come back in the response).
    """
    ticket = query.get("ticket")
    if ticket:
        return Credential("ticket", ticket)
    for proto in protocols:
        if proto.startswith(BEARER_PROTOCOL_PREFIX):
            if SUBPROTOCOL not in protocols:
                raise errors.InvalidArgument(
                    f"offer the subprotocol '{SUBPROTOCOL}' beside 'bearer.<jwt>'",
                    [("Sec-WebSocket-Protocol", f"must include {SUBPROTOCOL}")],
                )
            return Credential("bearer", proto[len(BEARER_PROTOCOL_PREFIX) :])
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return Credential("bearer", token.strip())
        raise errors.Unauthenticated("authorization header must be 'Bearer <jwt>'")
    return None


def display_name(claims: Mapping[str, Any], user_id: str) -> str:
    """The name shown beside a message: the JWT's ``name`` or ``preferred_username``,
    else the user id (ChatMessage.username)."""
    for claim in ("name", "preferred_username"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return user_id


# --------------------------------------------------------------------------- server frames


def _dict(message: Message) -> dict[str, Any]:
    # The JSON API's printing (Envoy's transcoder: every field, enum names, camelCase).
    return MessageToDict(message, always_print_fields_with_no_presence=True)


def dumps(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def chat_frame(response: chat_pb2.SubscribeChatResponse) -> dict[str, Any]:
    """``{"type": "joined" | "message" | "notice", "<type>": {...}}``: the JSON API's
    frame with its type named, so one parser serves both transports."""
    kind = response.WhichOneof("event") or "empty"
    return {"type": kind, **_dict(response)}


def sent_frame(message: chat_pb2.ChatMessage, client_message_id: str) -> dict[str, Any]:
    return {"type": "sent", "clientMessageId": client_message_id, "message": _dict(message)}


def error_frame(exc: BaseException, client_message_id: str = "") -> dict[str, Any]:
    """The error frame for ``exc``: the same code and message the HTTP and gRPC doors
    give (reels.http_errors), and when trying again later can work, after how long."""
    answer = http_error(exc)
    frame: dict[str, Any] = {
        "type": "error",
        "code": answer.code.name,
        "message": answer.message,
    }
    if client_message_id:
        frame["clientMessageId"] = client_message_id
    reason = getattr(exc, "reason", None)  # the ErrorInfo reason, e.g. CHAT_BANNED
    if isinstance(reason, str) and reason:
        frame["reason"] = reason
    retry = getattr(exc, "retry_after_seconds", None)
    if retry is None and answer.status == 503:
        retry = OUTAGE_RETRY_AFTER_S
    if retry is not None:
        frame["retryAfterSeconds"] = round(float(retry), 3)
    if answer.violations:
        frame["fieldViolations"] = [{"field": f, "description": d} for f, d in answer.violations]
    return frame


class FrameCache:
    """Encodes each channel publication once per instance, not once per subscriber.

    Every socket of a stream gets the same publication (same stream, epoch, offset);
    protobuf-to-JSON is the costly part of a fan-out, so its text is kept for the last
    ``size`` publications. Frames outside the channel (``joined``, notices to one
    client: offset 0) are encoded each time.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._texts: OrderedDict[tuple[str, str, int, str], str] = OrderedDict()
        self.hits = 0

    def text(self, response: chat_pb2.SubscribeChatResponse) -> str:
        kind = response.WhichOneof("event")
        if kind in ("message", "notice"):
            inner = getattr(response, kind)
            if inner.offset:
                key = (inner.stream_id, inner.epoch, inner.offset, kind)
                cached = self._texts.get(key)
                if cached is not None:
                    self.hits += 1
                    return cached
                text = dumps(chat_frame(response))
                self._texts[key] = text
                if len(self._texts) > self.size:
                    self._texts.popitem(last=False)
                return text
        return dumps(chat_frame(response))
