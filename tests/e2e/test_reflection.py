"""Reflection through the front door: `grpcurl -H "authorization: Bearer $TOKEN"
127.0.0.1:8080 list` and `describe` work for every reels.v1 service.

grpcurl is a Go binary that is not packaged for Debian 12; the grpcio-reflection client
asks the same questions (and grpcurl itself runs when it is on PATH).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import namedtuple
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from reels.v1 import chat_pb2, rank_pb2, stream_pb2, transcode_pb2, upload_pb2

from reels.server import contract_service_names
from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh

GENERATED = {
    svc.full_name: svc
    for module in (upload_pb2, transcode_pb2, rank_pb2, stream_pb2, chat_pb2)
    for svc in module.DESCRIPTOR.services_by_name.values()
}


class _Details(
    namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Bearer(grpc.StreamStreamClientInterceptor):
    """Adds the bearer token the front door requires (the reflection client sends none)."""

    def __init__(self, token: str) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),)

    def intercept_stream_stream(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        details = _Details(
            details.method,
            details.timeout,
            [*(details.metadata or ()), *self.metadata],
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )
        return continuation(details, request_iterator)


@pytest.fixture
def front_door(envoy: EnvoySettings) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(f"127.0.0.1:{envoy.listen_port}")
    try:
        yield grpc.intercept_channel(channel, _Bearer(mint_token("grpcurl-user")))
    finally:
        channel.close()


def test_the_contracts_have_five_services() -> None:
    assert sorted(GENERATED) == contract_service_names()
    assert len(GENERATED) == 5


def test_list_through_envoy_shows_every_reels_service(front_door: grpc.Channel) -> None:
    services = set(ProtoReflectionDescriptorDatabase(front_door).get_services())
    assert set(GENERATED) <= services, services


def test_describe_through_envoy_works_for_every_service(front_door: grpc.Channel) -> None:
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(front_door))
    for name, generated in GENERATED.items():
        described = pool.FindServiceByName(name)
        assert [m.name for m in described.methods] == [m.name for m in generated.methods]
        for method in described.methods:
            want = generated.methods_by_name[method.name]
            assert method.input_type.full_name == want.input_type.full_name
            assert method.output_type.full_name == want.output_type.full_name
            # Message types resolve too (grpcurl describes them, and builds requests).
            assert pool.FindMessageTypeByName(method.input_type.full_name).fields is not None


def _list_services(channel: grpc.Channel, path: str, metadata: tuple = ()) -> set[str]:
    call = channel.stream_stream(
        path,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = list(
        call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5,
             metadata=metadata)
    )  # fmt: skip
    return {s.name for s in replies[0].list_services_response.service}


def test_reflection_v1_is_routed_too(front_door: grpc.Channel) -> None:
    """grpcurl asks grpc.reflection.v1 first (same messages as v1alpha on the wire)."""
    names = _list_services(front_door, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    assert set(GENERATED) <= names


def test_reflection_through_envoy_needs_a_token(envoy: EnvoySettings) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{envoy.listen_port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            _list_services(
                channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
            )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_every_service_reflects_the_whole_api(mesh: Mesh) -> None:
    """Whichever service Envoy's reflection route names, it answers for all of them."""
    for service in mesh.ports:
        with grpc.insecure_channel(mesh.addr(service)) as channel:
            names = _list_services(
                channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
            )
        assert set(GENERATED) <= names, (service, names)


@pytest.mark.skipif(shutil.which("grpcurl") is None, reason="grpcurl is not installed")
def test_grpcurl_list_and_describe(envoy: EnvoySettings) -> None:
    base = [
        "grpcurl", "-plaintext",
        "-H", f"authorization: Bearer {mint_token('grpcurl-user')}",
        f"127.0.0.1:{envoy.listen_port}",
    ]  # fmt: skip
    listed = subprocess.run([*base, "list"], capture_output=True, text=True, timeout=20)
    assert listed.returncode == 0, listed.stderr
    assert set(GENERATED) <= set(listed.stdout.split())
    for name in GENERATED:
        described = subprocess.run(
            [*base, "describe", name], capture_output=True, text=True, timeout=20
        )
        assert described.returncode == 0, described.stderr
        assert f"service {name.rsplit('.', 1)[1]}" in described.stdout


def test_describe_a_method_symbol_through_envoy(front_door: grpc.Channel) -> None:
    """`grpcurl describe reels.v1.FeedService.GetFeed` asks for the file of a method."""
    database = ProtoReflectionDescriptorDatabase(front_door)
    for name, generated in GENERATED.items():
        for method in generated.methods:
            proto = database.FindFileContainingSymbol(f"{name}.{method.name}")
            assert proto.name == generated.file.name
