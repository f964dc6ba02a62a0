"""Server reflection in both versions clients ask for: v1alpha (grpcio-reflection's servicer)
and v1 (`buf curl` and newer grpcurl ask it first). The v1 messages are the v1alpha ones under
another package, the same bytes on the wire, so one servicer answers both."""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from policyhub._gen.grpc.reflection.v1 import reflection_pb2 as reflection_v1_pb2

V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME
V1_SERVICE_NAME = reflection_v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
# What a pool describing the reflection services needs.
DESCRIPTORS = (reflection_pb2.DESCRIPTOR, reflection_v1_pb2.DESCRIPTOR)


def enable_reflection(
    listed: tuple[str, ...], server: grpc.Server, pool: descriptor_pool.DescriptorPool | None
) -> None:
    """Both reflection services on `server`, each listing exactly `listed`, described by `pool`
    (None: the default pool)."""
    servicer = reflection.ReflectionServicer(listed, pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
