"""A value the database refuses (NUL in a string, a number out of range, a malformed
value, a string too long for its column) is the request's fault: INVALID_ARGUMENT over
gRPC and 400 over HTTP, with a message a person can read and no SQL in it. The errors
are real ones, raised by psycopg and PostgreSQL, not constructed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reels.db.engine import create_database, drop_database, make_engine
from reels.errors import from_rpc_error
from reels.http_errors import http_error
from reels.interceptors import ReelsServerInterceptor
from tests.fixtures.infra import _test_database_url

# (SQL, value): each fails with a DataError caused by the value alone.
CASES = {
    "nul_in_text": ("SELECT CAST(:v AS text)", "great clip\x00!!"),
    "smallint_out_of_range": ("SELECT CAST(:v AS smallint)", 99999),
    "bigint_out_of_range": ("SELECT CAST(CAST(:v AS numeric) AS bigint)", "1e30"),
    "not_a_uuid": ("SELECT CAST(:v AS uuid)", "not-a-uuid"),
    "too_long_for_varchar": ("INSERT INTO short_text VALUES (:v)", "abcdef"),
    "bad_timestamp": ("SELECT CAST(:v AS timestamptz)", "2024-13-45"),
    "timestamp_out_of_range": ("SELECT CAST(:v AS date)", "99999999-01-01"),
}
SETUP = "CREATE TEMP TABLE IF NOT EXISTS short_text (s varchar(3))"
REASONS = {
    "too_long_for_varchar": "longer than the database allows",
    "nul_in_text": "cannot be stored (such as NUL)",
    "smallint_out_of_range": "out of range",
    "bigint_out_of_range": "out of range",
    "not_a_uuid": "not in the format",
}


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    url = _test_database_url()
    await create_database(url)
    db = make_engine(url)
    try:
        yield db
    finally:
        await db.dispose()
        await drop_database(url)


async def _data_error(engine: AsyncEngine, sql: str, value: object) -> sqlalchemy.exc.DataError:
    with pytest.raises(sqlalchemy.exc.DataError) as info:
        async with engine.connect() as conn:
            await conn.execute(text(SETUP))
            await conn.execute(text(sql), {"v": value})
    return info.value


@pytest.mark.parametrize("case", CASES)
async def test_a_real_data_error_is_http_400_invalid_argument_without_sql(
    engine: AsyncEngine, case: str
) -> None:
    sql, value = CASES[case]
    exc = await _data_error(engine, sql, value)
    answer = http_error(exc)
    assert (answer.status, answer.code) == (400, grpc.StatusCode.INVALID_ARGUMENT)
    assert "SELECT" not in answer.message and "CAST" not in answer.message
    assert str(value) not in answer.message and "\x00" not in answer.message
    assert answer.violations and answer.violations[0][0] == "request"
    if case in REASONS:
        assert REASONS[case] in answer.message, answer.message
    # A tus-specific status never applies to it; an explicit one still wins.
    assert http_error(exc, status=422).status == 422


@pytest.fixture(scope="module")
async def db_server(engine: AsyncEngine) -> AsyncIterator[str]:
    """A gRPC server with the shared interceptor whose one RPC runs ``CASES[request]``."""

    async def run(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        sql, value = CASES[request.decode()]
        async with engine.connect() as conn:
            await conn.execute(text(SETUP))
            await conn.execute(text(sql), {"v": value})
        return b"stored"

    server = grpc.aio.server(interceptors=[ReelsServerInterceptor(None, "test")])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Db", {"Run": grpc.unary_unary_rpc_method_handler(run)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.mark.parametrize("case", CASES)
async def test_a_real_data_error_is_grpc_invalid_argument_with_bad_request(
    db_server: str, case: str
) -> None:
    async with grpc.aio.insecure_channel(db_server) as channel:
        call = channel.unary_unary("/test.Db/Run")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(case.encode(), metadata=(("x-reels-user", "u"),), timeout=10)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    message = err.details() or ""
    assert "reference" in message and "SELECT" not in message and "psycopg" not in message
    (bad,) = from_rpc_error(err)
    assert bad.field_violations[0].field == "request"  # type: ignore[attr-defined]
