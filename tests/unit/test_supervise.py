"""The supervisor restarts loops with backoff and reports required ones to health."""

from __future__ import annotations

import asyncio

from reels.supervise import LoopHandle, Supervisor


async def _until(predicate, limit_s: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_crashing_loop_is_restarted_and_its_reason_kept() -> None:
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ConnectionError(f"broker down (run {runs})")
        await asyncio.Event().wait()

    sup = Supervisor("t", stable_after_s=0.05)
    sup.add("consumer", flaky, min_backoff_s=0.01, max_backoff_s=0.02)
    await sup.start()
    await _until(lambda: runs == 3)
    status = sup.status()["consumer"]
    assert status["restarts"] == 2
    await sup.stop()


async def test_required_loop_down_turns_health_off_then_on_again() -> None:
    reports: list[bool] = []
    fail = asyncio.Event()
    fail.set()

    async def needed() -> None:
        if fail.is_set():
            fail.clear()
            raise RuntimeError("lost the database")
        await asyncio.Event().wait()

    async def report(healthy: bool) -> None:
        reports.append(healthy)

    sup = Supervisor("t", stable_after_s=0.1)
    sup.add("needed", needed, required=True, min_backoff_s=0.05, max_backoff_s=0.05)
    await sup.start()
    await sup.attach_health(report)
    await _until(lambda: reports[-1:] == [True] and False in reports)
    assert reports[-2:] == [False, True]
    assert sup.healthy
    await sup.stop()


async def test_optional_loop_never_touches_health() -> None:
    reports: list[bool] = []

    async def optional() -> None:
        raise RuntimeError("always fails")

    async def report(healthy: bool) -> None:
        reports.append(healthy)

    sup = Supervisor("t")
    sup.add("relay", optional, min_backoff_s=0.01, max_backoff_s=0.01)
    await sup.attach_health(report)
    await sup.start()
    await _until(lambda: sup.status()["relay"]["restarts"] >= 3)
    assert reports == [True]
    await sup.stop()


async def test_a_loop_can_report_its_own_readiness() -> None:
    reports: list[bool] = []
    handle_box: list[LoopHandle] = []

    async def consumer(handle: LoopHandle) -> None:
        handle_box.append(handle)
        await asyncio.Event().wait()

    async def report(healthy: bool) -> None:
        reports.append(healthy)

    sup = Supervisor("t")
    sup.add("consumer", consumer, required=True)
    await sup.attach_health(report)
    await sup.start()
    await _until(lambda: bool(handle_box))
    handle_box[0].not_ready("partitions revoked")
    await _until(lambda: reports[-1:] == [False])
    handle_box[0].ready()
    await _until(lambda: reports[-1:] == [True])
    await sup.stop()


async def test_stop_cancels_every_loop() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sup = Supervisor("t")
    sup.add("a", forever)
    await sup.start()
    await asyncio.sleep(0.01)
    await sup.stop(timeout_s=1)
    assert cancelled.is_set()


async def test_code_inside_a_loop_reports_readiness_without_a_handle() -> None:
    from reels.supervise import report_not_ready, report_ready

    gate = asyncio.Event()

    async def relay() -> None:
        report_not_ready("Kafka unreachable: connection refused")
        await gate.wait()
        report_ready()
        await asyncio.Event().wait()

    sup = Supervisor("t")
    sup.add("relay", relay)
    await sup.start()
    await _until(lambda: sup.status()["relay"]["reason"].startswith("Kafka unreachable"))
    assert sup.status()["relay"]["up"] is False
    gate.set()
    await _until(lambda: sup.status()["relay"]["up"])
    report_not_ready("outside any loop: ignored")  # no supervised loop here: a no-op
    await sup.stop()
