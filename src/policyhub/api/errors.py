"""Turns domain errors into gRPC statuses with google.rpc.Status details.

A server interceptor, so no servicer repeats error handling. It also makes an
undecodable request (e.g. non-UTF-8 bytes in a string) INVALID_ARGUMENT instead
of the INTERNAL that grpcio answers by default.
"""

from __future__ import annotations

import logging
import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from policyhub.errors import SHOWN_MAX, InvalidArgument, PolicyHubError, RateLimited, Unknown, clip

log = logging.getLogger(__name__)
ERROR_DOMAIN = "policyhub"
# The ErrorInfo metadata key holding SpaceONE's name for the error (see PolicyHubError.spaceone_error).
SPACEONE_ERROR = "spaceone_error"
# A backstop for values the raising code did not clip (e.g. a hostile key inside a field path):
# the whole status must stay far below gRPC's 16 KiB limit on trailing metadata.
MESSAGE_MAX = 1024
FIELD_MAX = 256


class _Undecodable:
    def __init__(self, reason: str):
        self.reason = reason


def to_status(error: PolicyHubError) -> status_pb2.Status:
    details = []
    metadata = {clip(key, SHOWN_MAX): clip(value, FIELD_MAX) for key, value in error.metadata.items()}
    metadata[SPACEONE_ERROR] = error.spaceone_error
    info = error_details_pb2.ErrorInfo(reason=f"ERROR_{error.name}", domain=ERROR_DOMAIN, metadata=metadata)
    details.append(info)
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=clip(v.field, FIELD_MAX), description=clip(v.description, MESSAGE_MAX)
                    )
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, RateLimited):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(1, math.ceil(error.retry_after * 1000)))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=code_pb2.Code.Value(error.code), message=clip(error, MESSAGE_MAX), details=packed)


def _abort(context: grpc.ServicerContext, error: PolicyHubError):
    context.abort_with_status(rpc_status.to_status(to_status(error)))


class ErrorInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(
                request_deserializer=_safe_deserializer(handler.request_deserializer),
                unary_unary=_guarded(handler.unary_unary, method),
            )
        if handler.unary_stream is not None:
            return handler._replace(
                request_deserializer=_safe_deserializer(handler.request_deserializer),
                unary_stream=_guarded_stream(handler.unary_stream, method),
            )
        return handler


def _safe_deserializer(deserialize):
    def wrapper(data: bytes):
        try:
            return deserialize(data)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return wrapper


def _refuse_undecodable(request, context: grpc.ServicerContext) -> None:
    if isinstance(request, _Undecodable):
        _abort(
            context,
            InvalidArgument("request", f"not a valid message ({request.reason}); strings must be valid UTF-8"),
        )


def _translate(context: grpc.ServicerContext, method: str, error: Exception):
    """Ends the call with the status of `error` (re-raised when the call has its status already)."""
    if isinstance(error, PolicyHubError):
        _abort(context, error)
    if context.code() is not None:
        raise error
    # a real bug: log it, answer INTERNAL without internals
    log.error("unhandled error in %s", method, exc_info=error)
    _abort(context, Unknown("internal error; see the server log"))


def _guarded(behavior, method: str):
    def wrapper(request, context):
        _refuse_undecodable(request, context)
        try:
            return behavior(request, context)
        except Exception as error:  # noqa: BLE001 - every error ends as a status
            _translate(context, method, error)

    return wrapper


def _guarded_stream(behavior, method: str):
    """As _guarded, for a server-streaming handler: errors raised while the stream runs end it
    with their status (after what it sent so far)."""

    def wrapper(request, context):
        _refuse_undecodable(request, context)
        try:
            yield from behavior(request, context)
        except Exception as error:  # noqa: BLE001 - every error ends as a status
            _translate(context, method, error)

    return wrapper
