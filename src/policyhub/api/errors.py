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
    """Unary calls, server-streaming calls (the call and the iteration of its answer) and
    client-streaming calls (each message read) alike."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        deserializer = _safe_deserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return handler._replace(
                request_deserializer=deserializer, unary_unary=_guarded(handler.unary_unary, method)
            )
        if handler.unary_stream is not None:
            return handler._replace(
                request_deserializer=deserializer, unary_stream=_guarded_stream(handler.unary_stream, method)
            )
        if handler.stream_unary is not None:
            return handler._replace(
                request_deserializer=deserializer, stream_unary=_guarded(handler.stream_unary, method, streamed=True)
            )
        return handler


def _safe_deserializer(deserialize):
    def wrapper(data: bytes):
        try:
            return deserialize(data)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return wrapper


def _undecodable(request: _Undecodable) -> InvalidArgument:
    return InvalidArgument("request", f"not a valid message ({request.reason}); strings must be valid UTF-8")


def _decoded(requests):
    """A client stream's messages; one that is not a valid message is INVALID_ARGUMENT."""
    for request in requests:
        if isinstance(request, _Undecodable):
            raise _undecodable(request)
        yield request


def _guarded(behavior, method: str, streamed: bool = False):
    def wrapper(request, context):
        if streamed:
            request = _decoded(request)
        elif isinstance(request, _Undecodable):
            _abort(context, _undecodable(request))
        try:
            return behavior(request, context)
        except PolicyHubError as error:
            _abort(context, error)
        except Exception:  # noqa: BLE001 - a real bug: log it, answer INTERNAL without internals
            _unexpected(context, method)

    return wrapper


def _guarded_stream(behavior, method: str):
    """A server-streaming call: its errors, and those of producing each message of its answer."""
    call = _guarded(behavior, method)

    def wrapper(request, context):
        return _guarded_iteration(call(request, context), context, method)

    return wrapper


def _guarded_iteration(responses, context: grpc.ServicerContext, method: str):
    try:
        yield from responses
    except PolicyHubError as error:
        _abort(context, error)
    except Exception:  # noqa: BLE001 - as in _guarded
        _unexpected(context, method)


def _unexpected(context: grpc.ServicerContext, method: str):
    if context.code() is not None:
        raise
    log.exception("unhandled error in %s", method)
    _abort(context, Unknown("internal error; see the server log"))
