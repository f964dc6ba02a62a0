"""What the SpaceONE listener's reflection describes: our protos as spaceone-api 1.12 has them.

spaceone-core's gRPC client reads every listed service's file from reflection and, for each
message-typed field between messages of that file, looks the field's message up by name in the
installed spaceone-api module; a message spaceone-api 1.12 lacks (Statement, ...) stops it
before its first call. So in the files below only SpaceONE's own messages are described, with
the fields and methods that use any other left out. Our messages are a wire-compatible
superset: what the client sends and receives is unchanged (it decodes with its own classes).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

# The messages of each file in spaceone-api 1.12 (files not named here are described as they are).
SPACEONE_MESSAGES = {
    "spaceone/api/repository/v1/policy.proto": frozenset(
        {
            "CreatePolicyRequest",
            "UpdatePolicyRequest",
            "PolicyRequest",
            "GetRepositoryPolicyRequest",
            "PolicyQuery",
            "PolicyInfo",
            "PoliciesInfo",
            "PolicyStatQuery",
        }
    ),
    "spaceone/api/repository/v1/repository.proto": frozenset(
        {
            "CreateRepositoryRequest",
            "UpdateRepositoryRequest",
            "RepositoryRequest",
            "GetRepositoryRequest",
            "RepositoryQuery",
            "RepositoryInfo",
            "RepositoriesInfo",
            "RepositoryStatQuery",
        }
    ),
}


def spaceone_pool(*files: FileDescriptor) -> descriptor_pool.DescriptorPool:
    """A descriptor pool of `files` and their imports, SPACEONE_MESSAGES' files trimmed."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        added.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)
        kept = SPACEONE_MESSAGES.get(file.name)
        if kept is not None:
            _trim(proto, kept)
        pool.Add(proto)

    for file in files:
        add(file)
    return pool


def _trim(proto: descriptor_pb2.FileDescriptorProto, kept: frozenset[str]) -> None:
    dropped = {f".{proto.package}.{m.name}" for m in proto.message_type if m.name not in kept}
    messages = [m for m in proto.message_type if m.name in kept]
    for message in messages:
        fields = [f for f in message.field if f.type_name not in dropped]
        del message.field[:]
        message.field.extend(fields)
    del proto.message_type[:]
    proto.message_type.extend(messages)
    for service in proto.service:
        methods = [m for m in service.method if m.input_type not in dropped and m.output_type not in dropped]
        del service.method[:]
        service.method.extend(methods)
