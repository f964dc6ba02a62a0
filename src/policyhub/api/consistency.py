"""Consistency on the wire: the token of a write whose answer is google.protobuf.Empty (the
deletes, whose SpaceONE signature cannot carry a field), sent as trailing metadata instead; and
the `consistency` requirement of an authorization question, as the service reads it."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as pb
from policyhub.api.info.common import enum_name

TOKEN_METADATA = "consistency-token"


def empty_with_token(context: grpc.ServicerContext, token: str) -> empty_pb2.Empty:
    context.set_trailing_metadata(((TOKEN_METADATA, token),))
    return empty_pb2.Empty()


def consistency_params(request) -> dict[str, Any] | None:
    """The request's `consistency` ({"requirement": name, "token": str}), None when unset."""
    if not request.HasField("consistency"):
        return None
    value = request.consistency
    return {"requirement": enum_name(pb.Consistency.Requirement, value.requirement), "token": value.token}
