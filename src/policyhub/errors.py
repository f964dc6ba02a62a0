"""Domain errors. Every layer raises these; only the api layer turns them into
gRPC statuses (see policyhub.api.errors). Messages keep SpaceONE's
`ERROR_<NAME>: <message>` form so SpaceONE clients can parse them."""

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
    """Base class. `code` is the grpc.StatusCode name, `name` the ERROR_<NAME> suffix."""

    code = "INTERNAL"
    name = "INTERNAL"

    def __init__(self, message: str, *, violations: tuple[FieldViolation, ...] = (), metadata: dict | None = None):
        super().__init__(message)
        self.message = message
        self.violations = violations
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}

    def __str__(self) -> str:
        return f"ERROR_{self.name}: {self.message}"


class InvalidArgument(PolicyHubError):
    code = "INVALID_ARGUMENT"
    name = "INVALID_PARAMETER"

    def __init__(self, field_path: str, description: str):
        super().__init__(
            f"{field_path}: {description}",
            violations=(FieldViolation(field_path, description),),
            metadata={"field": field_path},
        )
        self.field = field_path
        self.description = description


class RequiredParameter(InvalidArgument):
    name = "REQUIRED_PARAMETER"

    def __init__(self, field_path: str):
        super().__init__(field_path, "is required")


class NotFound(PolicyHubError):
    code = "NOT_FOUND"
    name = "NOT_FOUND"

    def __init__(self, resource: str, key: str, value: str, hint: str = ""):
        value = clip(value)
        message = f"{resource} not found ({key}={value})" + (f"; {hint}" if hint else "")
        super().__init__(message, metadata={"resource": resource, key: value})


class AlreadyExists(PolicyHubError):
    code = "ALREADY_EXISTS"
    name = "ALREADY_EXISTS"

    def __init__(self, resource: str, key: str, value: str, hint: str = ""):
        value = clip(value)
        message = f"{resource} already exists ({key}={value})" + (f"; {hint}" if hint else "")
        super().__init__(message, metadata={"resource": resource, key: value})


class FailedPrecondition(PolicyHubError):
    code = "FAILED_PRECONDITION"
    name = "FAILED_PRECONDITION"


class ManagedReadOnly(FailedPrecondition):
    name = "MANAGED_RESOURCE_READ_ONLY"


class Aborted(PolicyHubError):
    code = "ABORTED"
    name = "ETAG_MISMATCH"


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


class Unavailable(PolicyHubError):
    code = "UNAVAILABLE"
    name = "UNAVAILABLE"


class ConfigError(Exception):
    """Bad configuration: raised at start-up, before serving."""
