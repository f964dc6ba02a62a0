"""The `policyhub` command's client subcommands (policy, assign, check, export, import), on
policyhub.client. `policyhub serve` (or no subcommand) is the server: see policyhub.__main__.

Exit codes (EXIT_*): 0 done (check: ALLOW), 1 check DENY (or an import dry run that would
refuse items), 2 usage error (bad arguments, a file that cannot be read or parsed),
3 check CONDITIONAL (the decision needs context the request lacks), 4 the server refused the call
(INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, …), 5 no answer (UNAVAILABLE,
DEADLINE_EXCEEDED: the server is unreachable, or too slow for --timeout). Errors are one line on
stderr: `policyhub: <STATUS>: <message>`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
import yaml
from google.protobuf import json_format

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, bulk_pb2
from policyhub.client import DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, CallError, PolicyHub, Reference, as_dict
from policyhub.config import CLIENT_ENDPOINT_ENV, CLIENT_TOKEN_ENV

EXIT_OK = 0
EXIT_DENY = 1
EXIT_USAGE = 2
EXIT_CONDITIONAL = 3
EXIT_REFUSED = 4
EXIT_UNANSWERED = 5
NO_ANSWER = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
SUBJECT_TYPES = tuple(assignment_pb2.Subject.Type.keys()[1:])
GRANT_TYPES = tuple(assignment_pb2.Grant.Type.keys()[1:])
POLICY_COLUMNS = ("policy_id", "name", "state", "is_managed", "version", "updated_at")


class UsageError(Exception):
    """Bad arguments or input files: exit code 2."""


def add_client_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The connection options, accepted before and after the subcommand; only the top-level
    parser has `defaults` (a subcommand's unset option must not overwrite a top-level one)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("client options")
    group.add_argument(
        "--endpoint",
        default=default(os.environ.get(CLIENT_ENDPOINT_ENV) or DEFAULT_ENDPOINT),
        help=f"host:port of the server (env {CLIENT_ENDPOINT_ENV}; default {DEFAULT_ENDPOINT})",
    )
    group.add_argument(
        "--token",
        default=default(os.environ.get(CLIENT_TOKEN_ENV, "")),
        help=f"JWT or API key, sent as `authorization: Bearer` (env {CLIENT_TOKEN_ENV}; none in development mode)",
    )
    group.add_argument("--domain-id", default=default(""), help="the domain to act in (the token's own if unset)")
    group.add_argument(
        "--output", "-o", choices=("table", "json", "yaml"), default=default("table"), help="answer format"
    )
    group.add_argument(
        "--timeout", type=float, default=default(DEFAULT_TIMEOUT), help="deadline of each call, in seconds"
    )


def add_subcommands(subparsers: Any) -> None:
    policy = subparsers.add_parser("policy", help="create, get, list and delete policies")
    policies = policy.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    create = _command(policies, "create", _policy_create, help="create policies from YAML or JSON files")
    create.add_argument(
        "-f",
        "--file",
        action="append",
        required=True,
        help="a policy, a list of policies, or YAML documents of them, as Policy/create takes them (repeatable)",
    )
    get = _command(policies, "get", _policy_get, help="show one policy")
    get.add_argument("policy_id")
    listed = _command(policies, "list", _policy_list, help="list policies")
    listed.add_argument("--query", type=json.loads, default={}, help='SpaceONE query as JSON, e.g. {"page": …}')
    listed.add_argument("--exclude-managed", action="store_true", help="leave out the managed policies")
    delete = _command(policies, "delete", _policy_delete, help="delete a policy (restorable until purged)")
    delete.add_argument("policy_id")
    delete.add_argument("--cascade", action="store_true", help="also remove its assignments")

    assign = _command(subparsers, "assign", _assign, help="grant policies, roles or groups to a subject")
    assign.add_argument("subject", help=f"TYPE:ID ({', '.join(SUBJECT_TYPES)}) or a user id")
    assign.add_argument("grants", nargs="+", metavar="GRANT", help=f"TYPE:ID ({', '.join(GRANT_TYPES)})")
    assign.add_argument("--expires-at", default="", help="ISO-8601 time the assignment ends")

    check = _command(
        subparsers,
        "check",
        _check,
        help="may SUBJECT do ACTION on RESOURCE? exit 0 ALLOW, 1 DENY, 3 CONDITIONAL",
    )
    check.add_argument("subject", help=f"TYPE:ID ({', '.join(SUBJECT_TYPES)}) or a user id")
    check.add_argument("action")
    check.add_argument("resource")
    check.add_argument("--context", type=json.loads, default={}, help='conditions\' context as JSON: {"request": …}')

    export = _command(subparsers, "export", _export, help="save a domain as JSON lines (one BulkChunk a line)")
    export.add_argument("-f", "--file", help="where to write (default: stdout)")
    export.add_argument("--progress", action="store_true", help="count items on stderr (default: when it is a TTY)")

    imported = _command(
        subparsers, "import", _import, help="import what export saved (JSON lines, or grpcurl's output)"
    )
    imported.add_argument("-f", "--file", help="what to read (default: stdin)")
    imported.add_argument("--mode", choices=("merge", "replace"), help="replace: also delete what the file lacks")
    imported.add_argument("--dry-run", action="store_true", help="answer what would change, write nothing")
    imported.add_argument("--progress", action="store_true", help="count items on stderr (default: when it is a TTY)")


def _command(subparsers: Any, name: str, run: Callable[[PolicyHub, argparse.Namespace], int], **kwargs: Any) -> Any:
    parser = subparsers.add_parser(name, **kwargs)
    add_client_options(parser, defaults=False)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs a client subcommand; every failure is one line on stderr and its exit code."""
    try:
        with PolicyHub(args.endpoint, token=args.token, domain_id=args.domain_id, timeout=args.timeout) as hub:
            return args.run(hub, args)
    except UsageError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except CallError as exc:
        _fail(f"{exc.code.name}: {' '.join(exc.message.split())}")
        return EXIT_UNANSWERED if exc.code in NO_ANSWER else EXIT_REFUSED


def _fail(line: str) -> None:
    print(f"policyhub: {line}", file=sys.stderr)


# Subcommands


def _policy_create(hub: PolicyHub, args: argparse.Namespace) -> int:
    policies = [policy for path in args.file for policy in _read_policies(path)]
    created = [as_dict(hub.create_policy(policy)) for policy in policies]
    _print_rows(args.output, created, POLICY_COLUMNS)
    return EXIT_OK


def _policy_get(hub: PolicyHub, args: argparse.Namespace) -> int:
    _print_one(args.output, as_dict(hub.get_policy(args.policy_id)))
    return EXIT_OK


def _policy_list(hub: PolicyHub, args: argparse.Namespace) -> int:
    answer = hub.list_policies(args.query, exclude_managed=args.exclude_managed)
    if args.output == "table":
        _print_rows("table", [as_dict(policy) for policy in answer.results], POLICY_COLUMNS)
    else:
        _print_one(args.output, as_dict(answer))
    return EXIT_OK


def _policy_delete(hub: PolicyHub, args: argparse.Namespace) -> int:
    hub.delete_policy(args.policy_id, cascade=args.cascade)
    _print_one(args.output, {"policy_id": args.policy_id, "deleted": True})
    return EXIT_OK


def _assign(hub: PolicyHub, args: argparse.Namespace) -> int:
    subject_type, subject_id = _reference(args.subject, SUBJECT_TYPES, default="USER")
    grants = [_reference(grant, GRANT_TYPES) for grant in args.grants]
    answer = as_dict(hub.add_assignments(subject_type, [subject_id], grants, expires_at=args.expires_at))
    if args.output == "table":
        rows = [
            {
                "subject": _show(result["subject"]),
                "grant": _show(result["grant"]),
                "outcome": result["outcome"],
                "assignment_id": result.get("assignment_id", ""),
            }
            for result in answer.get("results", [])
        ]
        _print_rows("table", rows, ("subject", "grant", "outcome", "assignment_id"))
    else:
        _print_one(args.output, answer)
    return EXIT_OK


def _check(hub: PolicyHub, args: argparse.Namespace) -> int:
    subject = _reference(args.subject, SUBJECT_TYPES, default="USER")
    result = hub.check(subject, args.action, args.resource, context=args.context)
    answer = as_dict(result)
    if args.output == "table":
        print(answer["decision"], answer.get("reason", ""))
        if result.policy_id:
            print(f"policy {result.policy_id} statement {result.statement_index}")
        if result.via:
            print("via " + " > ".join(_show(as_dict(subject)) for subject in result.via))
        if result.missing_context:
            print("missing context: " + ", ".join(result.missing_context))
    else:
        _print_one(args.output, answer)
    return {
        assignment_pb2.CheckResult.ALLOW: EXIT_OK,
        assignment_pb2.CheckResult.CONDITIONAL: EXIT_CONDITIONAL,
    }.get(result.decision, EXIT_DENY)


def _export(hub: PolicyHub, args: argparse.Namespace) -> int:
    """To a file: written under a temporary name and renamed once the export is complete, so a
    failed export leaves no truncated file behind."""
    progress = _Progress("exported", args.progress)
    partial = f"{args.file}.partial" if args.file else ""
    try:
        out = open(partial, "w", encoding="utf-8") if partial else contextlib.nullcontext(sys.stdout)
    except OSError as exc:
        raise UsageError(f"cannot write {args.file}: {exc.strerror}") from None
    try:
        with out as stream:
            for chunk in hub.export_domain():
                if chunk.HasField("header"):
                    progress.total = sum(as_dict(chunk.header).get("counts", {}).values())
                stream.write(json.dumps(as_dict(chunk), separators=(",", ":")) + "\n")
                progress.add(len(chunk.items))
    except BaseException:
        if partial:
            os.unlink(partial)
        raise
    if partial:
        os.replace(partial, args.file)
    progress.done()
    return EXIT_OK


def _import(hub: PolicyHub, args: argparse.Namespace) -> int:
    progress = _Progress("sent", args.progress)
    chunks = list(_read_chunks(args.file))
    if chunks and chunks[0].HasField("header") and chunks[0].header.HasField("counts"):
        counts = chunks[0].header.counts
        progress.total = counts.policies + counts.groups + counts.roles + counts.assignments

    def sent() -> Iterator[bulk_pb2.BulkChunk]:
        for chunk in chunks:
            yield chunk
            progress.add(len(chunk.items))

    answer = hub.import_domain(sent(), mode=args.mode or "", dry_run=args.dry_run)
    progress.done()
    result = as_dict(answer)
    if args.output == "table":
        rows = [
            {"kind": kind, **{key: result.get(kind, {}).get(key, 0) for key in ("created", "updated", "deleted")}}
            for kind in ("policies", "groups", "roles", "assignments")
        ]
        _print_rows("table", rows, ("kind", "created", "updated", "deleted"))
        for refusal in result.get("refused", []):
            print(f"refused items[{refusal.get('item_index', 0)}]: {refusal['code']}: {refusal['message']}")
    else:
        _print_one(args.output, result)
    return EXIT_DENY if answer.refused_count else EXIT_OK


# Input


def _read_text(path: str | None) -> str:
    if path is None or path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _read_policies(path: str) -> list[dict[str, Any]]:
    """A policy, a list of them, or several YAML documents of either (JSON is YAML)."""
    try:
        documents = [document for document in yaml.safe_load_all(_read_text(path)) if document is not None]
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML or JSON: {' '.join(str(exc).split())}") from None
    policies: list[Any] = []
    for document in documents:
        policies.extend(document if isinstance(document, list) else [document])
    if not policies or not all(isinstance(policy, dict) for policy in policies):
        raise UsageError(f"{path}: expected a policy (a mapping) or a list of policies")
    return policies


def _read_chunks(path: str | None) -> Iterator[bulk_pb2.BulkChunk]:
    """BulkChunk messages in their JSON form, one after the other: JSON lines (what export
    writes) or grpcurl's indented objects."""
    text = _read_text(path)
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        try:
            data, position = decoder.raw_decode(text, position)
            yield json_format.ParseDict(data, bulk_pb2.BulkChunk())
        except (ValueError, json_format.ParseError) as exc:
            raise UsageError(f"{path or 'stdin'}: not a stream of BulkChunk JSON objects: {exc}") from None


def _reference(text: str, kinds: tuple[str, ...], default: str = "") -> Reference:
    kind, separator, ident = text.partition(":")
    if not separator:
        if not default:
            raise UsageError(f"{text!r}: expected TYPE:ID with TYPE one of {', '.join(kinds)}")
        kind, ident = default, text
    if kind.upper() not in kinds:
        raise UsageError(f"{text!r}: type {kind!r} is not one of {', '.join(kinds)}")
    return kind.upper(), ident


# Output


def _show(reference: dict[str, str]) -> str:
    return f"{reference.get('type', '')}:{reference.get('id', '')}"


def _print_one(output: str, answer: dict[str, Any]) -> None:
    if output == "json":
        print(json.dumps(answer, indent=2, sort_keys=True))
    elif output == "yaml":
        print(yaml.safe_dump(answer, sort_keys=True, allow_unicode=True), end="")
    else:
        width = max((len(key) for key in answer), default=0)
        for key in sorted(answer):
            print(f"{key.ljust(width)}  {_cell(answer[key])}")


def _print_rows(output: str, rows: list[dict[str, Any]], columns: Iterable[str]) -> None:
    if output != "table":
        _print_one(output, {"results": rows})
        return
    columns = list(columns)
    cells = [[_cell(row.get(column, "")) for column in columns] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)]
    for line in [[column.upper() for column in columns], *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


class _Progress:
    """`label N/TOTAL items` on one stderr line, rewritten as items go; only when asked or when
    stderr is a terminal (a pipe or a log file gets nothing)."""

    def __init__(self, label: str, forced: bool):
        self.label = label
        self.shown = forced or sys.stderr.isatty()
        self.count = 0
        self.total = 0

    def add(self, items: int) -> None:
        self.count += items
        if self.shown:
            total = f"/{self.total}" if self.total else ""
            print(f"\r{self.label} {self.count}{total} items", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.shown:
            print(file=sys.stderr)
