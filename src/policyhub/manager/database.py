"""The MongoDB connection (mongoengine default alias) and database-error translation."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import mongoengine
import mongomock
import mongomock.collection
import mongomock.filtering
import mongomock.helpers
import pymongo
import pymongo.collection
import pymongo.errors
import re2
from mongoengine import Document
from mongoengine.connection import DEFAULT_CONNECTION_NAME

from policyhub.errors import ConfigError, InvalidArgument, Unavailable
from policyhub.manager.embedded_index import index_embedded_store
from policyhub.model import ALL_DOCUMENTS, SUPERSEDED_INDEXES

log = logging.getLogger(__name__)


class Database:
    """Owns the connection: opened by bootstrap, closed at shutdown."""

    def __init__(
        self,
        uri: str,
        name: str,
        timeout_ms: int,
        query_timeout_ms: int,
        build_timeout_ms: int | None = None,
        listeners: tuple = (),
    ):
        self.uri = uri
        self.name = name
        self.timeout_ms = timeout_ms
        # list and stat: a page and a count, or an aggregation, over what a filter matches
        self.query_timeout_ms = query_timeout_ms
        # the read of a whole domain that builds its evaluation index: never less than a query's
        self.build_timeout_ms = max(build_timeout_ms or 0, query_timeout_ms)
        # pymongo command listeners (e.g. the metrics' command timer)
        self.listeners = listeners

    @property
    def embedded(self) -> bool:
        return not self.uri

    def connect(self) -> None:
        mongoengine.disconnect(DEFAULT_CONNECTION_NAME)
        if self.embedded:
            use_re2_in_embedded_store()
            serialize_embedded_writes()
            index_embedded_store()
            # mongoengine 0.29 wants the client class, not a mongomock:// URI.
            mongoengine.connect(
                db=self.name,
                host="mongodb://localhost",
                mongo_client_class=mongomock.MongoClient,
                tz_aware=True,
                uuidRepresentation="standard",
            )
        else:
            try:
                mongoengine.connect(
                    db=self.name,
                    host=self.uri,
                    tz_aware=True,
                    uuidRepresentation="standard",
                    serverSelectionTimeoutMS=self.timeout_ms,
                    connectTimeoutMS=self.timeout_ms,
                    socketTimeoutMS=self.timeout_ms,
                    event_listeners=list(self.listeners),
                    # Also a server-side limit (maxTimeMS) on every operation: a heavy user
                    # query cannot keep running on the database after we gave up on it.
                    timeoutMS=self.timeout_ms,
                )
            except pymongo.errors.ConfigurationError as exc:
                raise ConfigError(f"config key mongodb_uri: {exc}") from None
            self._answers()
        for document in ALL_DOCUMENTS:
            # Documents cache their collection; a new connection must not reuse the old one.
            document._collection = None
        self.ensure_indexes()

    def _answers(self) -> None:
        """A database that does not answer at start (or refuses us, e.g. bad credentials) stops
        the start with one line naming it (credentials left out), within db_timeout_ms."""
        shown = re.sub(r"//[^@/]*@", "//", self.uri)
        try:
            mongoengine.get_db().command("ping")
        except pymongo.errors.ConnectionFailure:
            raise Unavailable(f"database {shown} did not answer within db_timeout_ms ({self.timeout_ms} ms)") from None
        except pymongo.errors.PyMongoError as exc:
            raise Unavailable(f"database {shown} refused us: {exc}") from None

    def bounded(self, seconds_left: float | None):
        """A block whose operations end by the caller's deadline or the connection's own limit,
        whichever is sooner: the server-side limit (maxTimeMS) of each operation is what
        remains, so the database stops working for a caller that has given up."""
        return _bounded(self.timeout_ms, seconds_left)

    def bounded_query(self, seconds_left: float | None):
        """`bounded` for a list or stat call: the larger query limit instead of the connection's."""
        return _bounded(self.query_timeout_ms, seconds_left)

    def bounded_build(self):
        """A whole domain's read for its evaluation index, run by no call (see `seconds_left`):
        its operations end together by the build limit."""
        return _within(self.build_timeout_ms / 1000)

    def bounded_by_deadline(self, seconds_left: float | None):
        """A block of many operations (a bulk export's reads) that ends by the caller's deadline;
        without one, each operation ends by the connection's own limit."""
        if seconds_left is None or seconds_left > NO_DEADLINE_SECONDS:
            return contextlib.nullcontext()
        return _within(max(seconds_left, 0.001))

    def ensure_indexes(self) -> None:
        with translate_errors():
            for document in ALL_DOCUMENTS:
                document.ensure_indexes()
            for document, names in SUPERSEDED_INDEXES.items():
                stored = collection(document)
                for name in set(names) & set(stored.index_information()):
                    try:
                        stored.drop_index(name)
                    except pymongo.errors.OperationFailure:
                        pass  # another process starting at the same time dropped it first

    def ping(self) -> bool:
        """Whether the database answers now (bounded by the connection's timeouts)."""
        try:
            mongoengine.get_db().command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False

    def close(self) -> None:
        mongoengine.disconnect(DEFAULT_CONNECTION_NAME)


# gRPC reports a call without a deadline as one about 2**63 ns away, which pymongo cannot turn
# into a time; anything further than this is no deadline.
NO_DEADLINE_SECONDS = 365 * 24 * 3600.0


T = TypeVar("T")


def beyond_the_deadline(fn: Callable[..., T], *args: Any) -> T:
    """Runs `fn` free of the caller's deadline (see `bounded`), each of its operations bounded by
    the connection's own limit alone: for the work that must finish once it has started, whatever
    the caller does — undoing what a write wrote when it failed, and bumping the revision that
    tells readers it happened (a bound left to the caller would have run out by then when it is
    what made the write fail). (pymongo keeps the block's deadline in context variables, which a
    nested block can only shorten: `fn` runs in a context of its own.)"""
    return contextvars.Context().run(fn, *args)


def _bounded(limit_ms: int, seconds_left: float | None):
    limit = limit_ms / 1000
    if seconds_left is not None:
        limit = max(min(limit, seconds_left), 0.001)  # 0 would mean "no limit" to pymongo
    return _within(limit)


# When (time.monotonic()) the bound of the block being run ends: see `seconds_left`.
_BOUND_ENDS: contextvars.ContextVar[float | None] = contextvars.ContextVar("bound_ends", default=None)


@contextlib.contextmanager
def _within(seconds: float):
    ends = time.monotonic() + seconds
    outer = _BOUND_ENDS.get()
    token = _BOUND_ENDS.set(ends if outer is None else min(outer, ends))
    try:
        with pymongo.timeout(seconds):
            yield
    finally:
        _BOUND_ENDS.reset(token)


def seconds_left() -> float | None:
    """What is left of the bound of the call being served (see `Database.bounded`), None outside
    one: how long the call may wait for work it shares with others rather than runs itself (a
    domain's evaluation index being built), as its own database operations are bounded."""
    ends = _BOUND_ENDS.get()
    return None if ends is None else max(ends - time.monotonic(), 0.0)


def collection(document: type[Document]) -> pymongo.collection.Collection:
    """The collection a Document class declares. Managers read and compare-and-set through it
    with pymongo; the Document classes declare the schema, the indexes and the stored form."""
    return document._get_collection()


def to_stored(document: type[Document], record: Mapping) -> dict:
    """A record in its stored form, checked against its Document's schema and defaulted."""
    instance = document(**record)
    instance.validate()
    return instance.to_mongo().to_dict()


class _Re2AsRe:
    """The part of the `re` module mongomock's query matching uses (`compile` and the
    flags its `$options` map to), answered by RE2."""

    I, M, S = re.I, re.M, re.S  # noqa: E741 - the names mongomock reads
    _LETTERS = ((re.I, "i"), (re.M, "m"), (re.S, "s"))

    @classmethod
    def compile(cls, pattern: str, flags: int = 0):
        letters = "".join(letter for flag, letter in cls._LETTERS if flags & flag)
        return re2.compile(f"(?{letters}){pattern}" if letters else pattern)


def use_re2_in_embedded_store() -> None:
    """The embedded store matches `$regex` in this process, with the GIL held: with Python's
    backtracking `re`, one pathological pattern would stall every RPC. RE2 runs in time
    linear in the text whatever the pattern. Idempotent; affects only mongomock."""
    mongomock.filtering.re = _Re2AsRe
    mongomock.filtering.RE_TYPE = re2._Regexp  # what `_Re2AsRe.compile` returns, so it is used as is


# Held by every write to the embedded store (re-entrant: an insert of many inserts each one).
_EMBEDDED_WRITES = threading.RLock()


def serialize_embedded_writes() -> None:
    """The embedded store's writes are not atomic across threads: an insert is stored before
    its unique indexes are checked and rolled back after, so a concurrent read can see a
    duplicate that never existed and two racing inserts of one key can both be rolled back;
    two conditional updates can both match a document (find-and-modify reads, then updates by
    `_id`: two compare-and-sets on one etag could both win). Here each write, find-and-modify
    included, runs alone, and an insert checks its unique keys before it is stored.
    Idempotent; affects only mongomock."""
    collection = mongomock.collection.Collection
    if getattr(collection, "_policyhub_serialized", False):
        return
    insert, update, delete = collection._insert, collection._update, collection._delete
    find_and_modify = collection._find_and_modify

    def _insert(self, data, *args, **kwargs):
        with _EMBEDDED_WRITES:
            if isinstance(data, Mapping):
                _refuse_duplicate(self, data)
            return insert(self, data, *args, **kwargs)

    def _update(self, *args, **kwargs):
        with _EMBEDDED_WRITES:
            return update(self, *args, **kwargs)

    def _delete(self, *args, **kwargs):
        with _EMBEDDED_WRITES:
            return delete(self, *args, **kwargs)

    def _find_and_modify(self, *args, **kwargs):
        with _EMBEDDED_WRITES:
            return find_and_modify(self, *args, **kwargs)

    collection._insert, collection._update, collection._delete = _insert, _update, _delete
    collection._find_and_modify = _find_and_modify
    collection._policyhub_serialized = True


def _refuse_duplicate(collection, document: Mapping) -> None:
    for index in collection._store.indexes.values():
        if not index.get("unique") or index.get("sparse") or "partialFilterExpression" in index:
            continue  # mongomock's own check after storing still covers these
        spec = {}
        for key, _ in index["key"]:
            try:
                spec[key] = mongomock.helpers.get_value_by_dot(document, key)
            except KeyError:
                spec[key] = None
        # Compared in the stored form (naive UTC dates to the millisecond), as mongomock's own check does.
        spec = mongomock.helpers.patch_datetime_awareness_in_document(spec)
        if next(iter(collection._iter_documents(spec)), None) is not None:
            raise pymongo.errors.DuplicateKeyError("E11000 Duplicate Key Error", 11000)


# Errors of the database server itself, not of what it was asked: its internal error, a shutdown or
# step-down under way, a primary lost (the codes MongoDB's retryable-writes rules list, and
# InternalError). The caller may retry; INTERNAL would blame policyhub.
SERVER_FAULT_CODES = frozenset({1, 6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


class translate_errors:
    """Context manager and decorator: database failures become domain errors, never INTERNAL."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        if isinstance(
            exc,
            (
                pymongo.errors.ConnectionFailure,
                pymongo.errors.ServerSelectionTimeoutError,
                pymongo.errors.NetworkTimeout,
                pymongo.errors.ExecutionTimeout,
            ),
        ):
            log.warning("database unavailable: %s", exc)
            raise Unavailable("database unavailable; retry later") from exc
        if isinstance(exc, pymongo.errors.OperationFailure) and exc.code in SERVER_FAULT_CODES:
            log.warning("database failed: %s", exc)
            raise Unavailable("database failed the operation; retry later") from exc
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with translate_errors():
                return func(*args, **kwargs)

        return wrapper


EMBEDDED_QUERY_ERRORS = (TypeError, AttributeError, ValueError, KeyError, NotImplementedError)


@translate_errors()
def aggregate(document, pipeline: list[dict]) -> list[dict]:
    """Runs a compiled user query. The compiler validated its shape; what the server still
    rejects depends on the data (e.g. $dateToString of a non-date), so it is the query's fault."""
    stored = collection(document)
    try:
        results = list(stored.aggregate(pipeline))
    except pymongo.errors.OperationFailure as exc:
        if isinstance(exc, pymongo.errors.ExecutionTimeout) or exc.code in SERVER_FAULT_CODES:
            raise  # out of time, or the server's own failure: translate_errors says UNAVAILABLE
        reason = (exc.details or {}).get("errmsg") or str(exc)
        raise InvalidArgument("query", f"the database rejected the query: {reason}") from exc
    except EMBEDDED_QUERY_ERRORS as exc:
        # The embedded store evaluates pipelines in Python and fails with plain exceptions where
        # MongoDB answers OperationFailure (e.g. $dateToString of a string); those are the query's.
        if not embedded(stored):
            raise
        raise InvalidArgument("query", f"the embedded store cannot evaluate this query: {type(exc).__name__}") from exc
    if embedded(stored):
        # The embedded store applies tz_aware to cursors only: its pipeline results carry naive UTC datetimes.
        return mongomock.helpers.make_datetime_timezone_aware_in_document(results)
    return results


def embedded(stored: pymongo.collection.Collection) -> bool:
    """Whether the collection lives in the embedded store (mongomock)."""
    return isinstance(stored.database.client, mongomock.MongoClient)
