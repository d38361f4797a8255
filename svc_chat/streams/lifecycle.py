"""The live-stream state machine: CREATED -> LIVE -> ENDED, and CREATED -> ENDED.

Pure: no I/O. The store applies a transition with a conditional UPDATE (``WHERE state =
<the state this module approved>``), so two concurrent EndStreams cannot both win: the
loser re-reads, and this module then refuses it naming the state it found.
"""

from __future__ import annotations

from enum import IntEnum

from reels.v1 import common_pb2

from reels import errors


class State(IntEnum):
    """A stream's state; the values are ``reels.v1.LiveStreamState``'s."""

    CREATED = common_pb2.LIVE_STREAM_STATE_CREATED
    LIVE = common_pb2.LIVE_STREAM_STATE_LIVE
    ENDED = common_pb2.LIVE_STREAM_STATE_ENDED

    @classmethod
    def of(cls, value: str | int) -> State:
        """From a stored name ("LIVE") or a proto value (2)."""
        return cls[value] if isinstance(value, str) else cls(value)


ALLOWED: frozenset[tuple[State, State]] = frozenset(
    {
        (State.CREATED, State.LIVE),
        (State.CREATED, State.ENDED),
        (State.LIVE, State.ENDED),
    }
)

# How a refusal reads, per target: "stream s is ENDED; it cannot start again".
_VERB = {State.LIVE: "start", State.ENDED: "end"}

EVENT_TYPES = {State.LIVE: "stream.started", State.ENDED: "stream.ended"}
"""The ``event_type`` of the StreamLifecycleEvent a transition into a state emits."""


def can_transition(current: State, target: State) -> bool:
    return (current, target) in ALLOWED


def check_transition(stream_id: str, current: State, target: State) -> None:
    """Nothing when ``current -> target`` is allowed; else FAILED_PRECONDITION naming
    the current state ("stream s is ENDED; it cannot start again")."""
    if can_transition(current, target):
        return
    verb = _VERB.get(target, f"become {target.name}")
    if current == target:
        why = "it is already live" if target == State.LIVE else "it has already ended"
        raise errors.FailedPrecondition(
            f"stream {stream_id} is {current.name}; {why}, it cannot {verb} again"
        )
    if current == State.ENDED:
        raise errors.FailedPrecondition(
            f"stream {stream_id} is ENDED; it cannot {verb} again (create a new stream)"
        )
    raise errors.FailedPrecondition(f"stream {stream_id} is {current.name}; it cannot {verb}")


def check_key_rotation(stream_id: str, current: State) -> None:
    """A key can be replaced while the stream is CREATED or LIVE (a leaked key during a
    broadcast must be replaceable); an ENDED stream has no use for one:
    FAILED_PRECONDITION."""
    if current == State.ENDED:
        raise key_rotation_refused(stream_id)


def key_rotation_refused(stream_id: str) -> errors.FailedPrecondition:
    """The FAILED_PRECONDITION for rotating the key of an ENDED stream."""
    return errors.FailedPrecondition(
        f"stream {stream_id} is ENDED; its stream key cannot be rotated"
    )
