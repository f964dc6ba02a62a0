"""Domain errors. Every layer raises these; only the api layer turns them into
gRPC statuses (see policyhub.api.errors). Messages keep SpaceONE's
`ERROR_<NAME>: <message>` form so SpaceONE clients can parse them. Where SpaceONE names the same
condition differently, the error also carries SpaceONE's name (`spaceone_error`), so a client
matching on SpaceONE's names can match on that instead."""

from __future__ import annotations

from dataclasses import dataclass

# The most of a caller's value an error repeats: a hostile 10 kB id must not come back (gRPC
# caps trailing metadata, where the status details travel, at 16 KiB).
SHOWN_MAX = 64


def clip(value: object, limit: int = SHOWN_MAX) -> str:
    """`value` as text, cut to its first `limit` characters followed by "..." when longer."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class PolicyHubError(Exception):
    """Base class. `code` is the grpc.StatusCode name, `name` the ERROR_<NAME> suffix,
    `spaceone_name` SpaceONE's full name for the condition where it differs from ours (a class
    default, or given where one condition of a class has its own name in SpaceONE)."""

    code = "INTERNAL"
    name = "INTERNAL"
    spaceone_name = ""

    def __init__(
        self,
        message: str,
        *,
        violations: tuple[FieldViolation, ...] = (),
        metadata: dict | None = None,
        spaceone_name: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.violations = violations
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}
        if spaceone_name:
            self.spaceone_name = spaceone_name

    @property
    def spaceone_error(self) -> str:
        """SpaceONE's name for this condition; our own where SpaceONE has none or the same."""
        return self.spaceone_name or f"ERROR_{self.name}"

    def __str__(self) -> str:
        return f"ERROR_{self.name}: {self.message}"


class InvalidArgument(PolicyHubError):
    code = "INVALID_ARGUMENT"
    name = "INVALID_PARAMETER"

    def __init__(self, field_path: str, description: str, *, spaceone_name: str = ""):
        super().__init__(
            f"{field_path}: {description}",
            violations=(FieldViolation(field_path, description),),
            metadata={"field": field_path},
            spaceone_name=spaceone_name,
        )
        self.field = field_path
        self.description = description


class RequiredParameter(InvalidArgument):
    name = "REQUIRED_PARAMETER"

    def __init__(self, field_path: str, why: str = ""):
        super().__init__(field_path, f"is required ({why})" if why else "is required")


class NotFound(PolicyHubError):
    code = "NOT_FOUND"
    name = "NOT_FOUND"

    def __init__(self, resource: str, key: str, value: str, hint: str = ""):
        value = clip(value)
        super().__init__(
            f"{resource} not found ({key}={value})" + (f"; {hint}" if hint else ""),
            metadata={"resource": resource, key: value},
            # SpaceONE names a missing policy apart; anything else missing is its generic name.
            spaceone_name="ERROR_NO_POLICY" if resource == "Policy" else "",
        )


class AlreadyExists(PolicyHubError):
    code = "ALREADY_EXISTS"
    name = "ALREADY_EXISTS"
    spaceone_name = "ERROR_SAVE_UNIQUE_VALUES"

    def __init__(self, resource: str, key: str, value: str, hint: str = ""):
        value = clip(value)
        message = f"{resource} already exists ({key}={value})" + (f"; {hint}" if hint else "")
        super().__init__(message, metadata={"resource": resource, key: value})


class FailedPrecondition(PolicyHubError):
    code = "FAILED_PRECONDITION"
    name = "FAILED_PRECONDITION"


class ResyncRequired(FailedPrecondition):
    """A reader of the change log cannot go on from its position (changes it needs may have
    expired, or were too many to keep): it must re-read the state it follows, then follow the
    log from `continuation_token` (taken before that re-read, so nothing is missed)."""

    name = "RESYNC_REQUIRED"

    def __init__(self, why: str, continuation_token: str):
        super().__init__(
            f"{why}; resync: re-read the state you follow, then follow the change log from the "
            "continuation_token of this error's ErrorInfo metadata (or from an empty `after`)",
            metadata={"continuation_token": continuation_token},
        )
        self.continuation_token = continuation_token


class ManagedReadOnly(FailedPrecondition):
    name = "MANAGED_RESOURCE_READ_ONLY"


class Aborted(PolicyHubError):
    code = "ABORTED"
    name = "ETAG_MISMATCH"


class ConcurrentChange(Aborted):
    """The domain changed under a call that needs it to hold still (an export read across
    writes, an import whose plan went stale while it was written); a retry can succeed."""

    name = "CONCURRENT_CHANGE"


class DeadlineExceeded(PolicyHubError):
    """The call's deadline passed (or the client went away) before its work could start."""

    code = "DEADLINE_EXCEEDED"
    name = "DEADLINE_EXCEEDED"


class PermissionDenied(PolicyHubError):
    code = "PERMISSION_DENIED"
    name = "PERMISSION_DENIED"


class Unauthenticated(PolicyHubError):
    code = "UNAUTHENTICATED"
    name = "AUTHENTICATE_FAILURE"


class RateLimited(PolicyHubError):
    """Over a rate limit; `retry_after` (seconds) is when the next call can pass."""

    code = "RESOURCE_EXHAUSTED"
    name = "RATE_LIMITED"

    def __init__(self, kind: str, retry_after: float):
        super().__init__(f"rate limit exceeded ({kind}); retry in {retry_after:.1f} s", metadata={"limit": kind})
        self.kind = kind
        self.retry_after = retry_after


class ResultTooLarge(PolicyHubError):
    """One result alone does not fit a reply of max_message_bytes."""

    code = "RESOURCE_EXHAUSTED"
    name = "RESULT_TOO_LARGE"


class TooManyWatches(PolicyHubError):
    """The process (or the domain) already has as many watches as it serves at once."""

    code = "RESOURCE_EXHAUSTED"
    name = "TOO_MANY_WATCHES"


class SlowConsumer(PolicyHubError):
    """A watcher that stopped reading what the server sends."""

    code = "RESOURCE_EXHAUSTED"
    name = "SLOW_CONSUMER"


class Unknown(PolicyHubError):
    """A bug: the reply says only that, the details go to the server log."""

    code = "INTERNAL"
    name = "UNKNOWN"


class Unavailable(PolicyHubError):
    code = "UNAVAILABLE"
    name = "UNAVAILABLE"


class ConfigError(Exception):
    """Bad configuration: raised at start-up, before serving."""
