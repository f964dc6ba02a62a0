"""A page of results cut to what fits one gRPC reply."""

from __future__ import annotations

from google.protobuf.message import Message

from policyhub.errors import ResultTooLarge

# Room for a reply's other fields (total_count) and for each result's field tag and length prefix.
_REPLY_OVERHEAD = 64
_RESULT_OVERHEAD = 6


def fitted(results: list[Message], max_bytes: int) -> list[Message]:
    """The longest prefix of a page that fits one reply of max_bytes. A page too large for gRPC
    comes back shorter instead of failing; total_count stays exact, so the client pages on
    from `start + len(results)`."""
    budget = max_bytes - _REPLY_OVERHEAD
    for count, result in enumerate(results):
        budget -= result.ByteSize() + _RESULT_OVERHEAD
        if budget < 0:
            if count == 0:
                raise ResultTooLarge(
                    f"the first result of the page ({result.ByteSize()} bytes) does not fit a "
                    f"reply of {max_bytes} bytes; select fewer fields with query.only"
                )
            return results[:count]
    return results
