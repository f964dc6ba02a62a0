"""spaceone.api.repository.v1.Bulk servicer: export_domain streams a snapshot, import_domain
reads a stream (bounded in items, bytes and time) and answers once."""

from __future__ import annotations

from typing import Any, Iterator

import grpc

from policyhub._gen.spaceone.api.repository.v1 import bulk_pb2, bulk_pb2_grpc
from policyhub.api.context import CallerResolver
from policyhub.api.info.bulk import from_bulk_header, from_bulk_item, to_bulk_chunks, to_import_domain_info
from policyhub.errors import DeadlineExceeded, InvalidArgument, RequiredParameter
from policyhub.service.bulk_service import BulkService


class BulkAPI(bulk_pb2_grpc.BulkServicer):
    def __init__(
        self, bulk: BulkService, caller: CallerResolver, max_message_bytes: int, max_items: int, max_bytes: int
    ):
        self.bulk = bulk
        self.caller = caller
        self.max_message_bytes = max_message_bytes
        self.max_items = max_items
        self.max_bytes = max_bytes

    def export_domain(self, request, context):
        snapshot = self.bulk.export(self.caller(request, context), {})
        return to_bulk_chunks(snapshot, self.max_message_bytes)

    def import_domain(self, request_iterator, context):
        messages = _received(request_iterator)
        first = next(messages, None)
        if first is None or not first.HasField("header"):
            raise RequiredParameter("header", "the first message carries it")
        # The header names the domain, as a request body does (the caller's own replaces it).
        ctx = self.caller(first.header, context)
        header = from_bulk_header(first.header)
        # Refused callers are refused before the stream is read.
        self.bulk.check_header(ctx, header)
        items = self._read(first, messages)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("the call's deadline passed while its stream was read; nothing was imported")
        outcome = self.bulk.import_domain(ctx, header, items)
        return to_import_domain_info(outcome, self.max_message_bytes)

    def _read(self, first: bulk_pb2.BulkChunk, rest: Iterator[bulk_pb2.BulkChunk]) -> list[tuple[str, dict[str, Any]]]:
        """Every item of the stream, within max_items and max_bytes (refused as soon as either
        is exceeded, without reading on)."""
        items: list[tuple[str, dict[str, Any]]] = []
        size = 0
        message = first
        while message is not None:
            if message is not first and message.HasField("header"):
                raise InvalidArgument("header", "only the first message of the stream carries the header")
            size += message.ByteSize()
            if size > self.max_bytes:
                raise InvalidArgument("items", f"the stream is larger than {self.max_bytes} bytes (import_max_bytes)")
            if len(items) + len(message.items) > self.max_items:
                raise InvalidArgument("items", f"at most {self.max_items} items per import (import_max_items)")
            base = len(items)
            items.extend([from_bulk_item(item, base + offset) for offset, item in enumerate(message.items)])
            message = next(rest, None)
        return items


def _received(request_iterator) -> Iterator[bulk_pb2.BulkChunk]:
    """The stream's messages; a call that ends while they are read (its deadline, or the client
    going away) stops the reading."""
    try:
        yield from request_iterator
    except grpc.RpcError:
        raise DeadlineExceeded(
            "the call ended (deadline or cancellation) while its stream was read; nothing was imported"
        ) from None
