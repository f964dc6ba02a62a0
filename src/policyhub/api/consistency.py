"""The consistency token of a write whose answer is google.protobuf.Empty (the deletes, whose
SpaceONE signature cannot carry a field): sent as trailing metadata instead."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

TOKEN_METADATA = "consistency-token"


def empty_with_token(context: grpc.ServicerContext, token: str) -> empty_pb2.Empty:
    context.set_trailing_metadata(((TOKEN_METADATA, token),))
    return empty_pb2.Empty()
