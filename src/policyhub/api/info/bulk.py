"""Bulk export and import messages <-> the records of policyhub.service.bulk_service: a snapshot
becomes a header and chunks of items (each within the reply size), items read back become the
fields the import checks, and the import's outcome its answer."""

from __future__ import annotations

from typing import Any, Iterator

from google.protobuf.message import Message

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, bulk_pb2, policy_pb2
from policyhub.api.info.common import enum_name, list_values, struct_dict, to_iso, to_list_value, to_struct
from policyhub.api.info.policy import requested_statement, to_statement
from policyhub.errors import ResultTooLarge
from policyhub.service.bulk_service import Snapshot, refusal_fields

# Room for a chunk's own framing, and for each item's field tag and length prefix.
_CHUNK_OVERHEAD = 64
_ITEM_OVERHEAD = 6
_KIND_OF_ONEOF = {"policy": "POLICY", "group": "GROUP", "role": "ROLE", "assignment": "ASSIGNMENT"}


# -- export ------------------------------------------------------------------------------------


def to_bulk_chunks(snapshot: Snapshot, max_bytes: int) -> Iterator[bulk_pb2.BulkChunk]:
    """The header, then the items in as few messages as fit `max_bytes` each."""
    yield bulk_pb2.BulkChunk(
        header=bulk_pb2.BulkHeader(
            domain_id=snapshot.domain_id,
            consistency_token=snapshot.consistency_token,
            exported_at=to_iso(snapshot.exported_at),
            counts=bulk_pb2.BulkCounts(
                policies=len(snapshot.policies),
                groups=len(snapshot.groups),
                roles=len(snapshot.roles),
                assignments=len(snapshot.assignments),
            ),
        )
    )
    budget = max_bytes - _CHUNK_OVERHEAD
    items: list[bulk_pb2.BulkItem] = []
    used = 0
    for item in _items(snapshot):
        size = item.ByteSize() + _ITEM_OVERHEAD
        if size > budget:
            raise ResultTooLarge(
                f"an item ({item.ByteSize()} bytes) does not fit a message of {max_bytes} bytes; "
                "raise max_message_bytes to export this domain"
            )
        if used + size > budget:
            yield bulk_pb2.BulkChunk(items=items)
            items, used = [], 0
        items.append(item)
        used += size
    if items:
        yield bulk_pb2.BulkChunk(items=items)


def _items(snapshot: Snapshot) -> Iterator[bulk_pb2.BulkItem]:
    for record in snapshot.policies:
        yield bulk_pb2.BulkItem(policy=to_bulk_policy(record))
    for record in snapshot.groups:
        yield bulk_pb2.BulkItem(group=bulk_pb2.BulkGroup(group_id=record["group_id"], **_set_fields(record)))
    for record in snapshot.roles:
        yield bulk_pb2.BulkItem(role=bulk_pb2.BulkRole(role_id=record["role_id"], **_set_fields(record)))
    for record in snapshot.assignments:
        yield bulk_pb2.BulkItem(assignment=to_bulk_assignment(record))


def to_bulk_policy(record: dict[str, Any]) -> bulk_pb2.BulkPolicy:
    policy = bulk_pb2.BulkPolicy(
        policy_id=record["policy_id"],
        name=record["name"],
        description=record["description"],
        state=record["state"],
        permissions=record["permissions"],
        statements=[_exported_statement(s) for s in record["statements"]],
        project_id=record["project_id"],
    )
    _set_values(policy, record)
    return policy


def _exported_statement(statement: dict[str, Any]) -> policy_pb2.Statement:
    shown = to_statement(statement)
    if not statement.get("conditions"):
        shown.ClearField("conditions")
    return shown


def _set_fields(record: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": record["name"], "description": record["description"]}
    if record["labels"]:
        fields["labels"] = to_list_value(record["labels"])
    if record["tags"]:
        fields["tags"] = to_struct(record["tags"])
    return fields


def to_bulk_assignment(record: dict[str, Any]) -> bulk_pb2.BulkAssignment:
    assignment = bulk_pb2.BulkAssignment(
        assignment_id=record["assignment_id"],
        subject=assignment_pb2.Subject(type=record["subject_type"], id=record["subject_id"]),
        grant=assignment_pb2.Grant(type=record["grant_type"], id=record["grant_id"]),
        expires_at=to_iso(record["expires_at"]),
    )
    _set_values(assignment, record)
    return assignment


def _set_values(message: Message, record: dict[str, Any]) -> None:
    """Labels and tags only when there are some (most items have none)."""
    if record["labels"]:
        message.labels.CopyFrom(to_list_value(record["labels"]))  # type: ignore[attr-defined]
    if record["tags"]:
        message.tags.CopyFrom(to_struct(record["tags"]))  # type: ignore[attr-defined]


# -- import ------------------------------------------------------------------------------------


def from_bulk_header(header: bulk_pb2.BulkHeader) -> dict[str, Any]:
    counts = None
    if header.HasField("counts"):
        counts = {
            "policies": header.counts.policies,
            "groups": header.counts.groups,
            "roles": header.counts.roles,
            "assignments": header.counts.assignments,
        }
    return {
        "mode": enum_name(bulk_pb2.BulkHeader.Mode, header.mode),
        "dry_run": header.dry_run,
        "counts": counts,
    }


def from_bulk_item(item: bulk_pb2.BulkItem, index: int) -> tuple[str, dict[str, Any]]:
    """(kind, the item's fields as its own API's request has them); kind "" when none is set."""
    which = item.WhichOneof("item")
    path = f"items[{index}]"
    if which == "policy":
        policy = item.policy
        return "POLICY", {
            "policy_id": policy.policy_id,
            "name": policy.name,
            "description": policy.description,
            "state": enum_name(policy_pb2.PolicyInfo.State, policy.state),
            "permissions": list(policy.permissions),
            "statements": [requested_statement(s, f"{path}.statements[{i}]") for i, s in enumerate(policy.statements)],
            **_values(policy, path),
            "project_id": policy.project_id,
        }
    if which in ("group", "role"):
        value = getattr(item, which)
        id_field = f"{which}_id"
        return _KIND_OF_ONEOF[which], {
            id_field: getattr(value, id_field),
            "name": value.name,
            "description": value.description,
            **_values(value, path),
        }
    if which == "assignment":
        assignment = item.assignment
        return "ASSIGNMENT", {
            "assignment_id": assignment.assignment_id,
            "subject": _pair(assignment, "subject", assignment_pb2.Subject.Type),
            "grant": _pair(assignment, "grant", assignment_pb2.Grant.Type),
            "expires_at": assignment.expires_at,
            **_values(assignment, path),
        }
    return "", {}


def _values(message: Message, path: str) -> dict[str, Any]:
    return {
        "labels": list_values(message.labels, f"{path}.labels") if message.HasField("labels") else [],  # type: ignore[attr-defined]
        "tags": struct_dict(message.tags, f"{path}.tags") if message.HasField("tags") else {},  # type: ignore[attr-defined]
    }


def _pair(message: Message, field: str, enum_type) -> dict[str, str] | None:
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    return {"type": enum_name(enum_type, value.type), "id": value.id}


def to_import_domain_info(outcome: dict[str, Any], max_bytes: int) -> bulk_pb2.ImportDomainInfo:
    """The import's answer; a dry run's list of changes is cut short to fit one reply
    (`changes_truncated`), the counts stay exact."""
    counts = outcome["counts"]
    info = bulk_pb2.ImportDomainInfo(
        domain_id=outcome["domain_id"],
        mode=outcome["mode"],
        dry_run=outcome["dry_run"],
        policies=bulk_pb2.ImportCounts(**counts["POLICY"]),
        groups=bulk_pb2.ImportCounts(**counts["GROUP"]),
        roles=bulk_pb2.ImportCounts(**counts["ROLE"]),
        assignments=bulk_pb2.ImportCounts(**counts["ASSIGNMENT"]),
        refused=[bulk_pb2.ImportRefusal(**refusal_fields(refusal)) for refusal in outcome["refused"]],
        refused_count=outcome["refused_count"],
        consistency_token=outcome["consistency_token"],
    )
    budget = max_bytes - info.ByteSize() - _CHUNK_OVERHEAD
    for change in outcome["changes"]:
        entry = bulk_pb2.ImportChange(
            kind=change["kind"],
            id=change["id"],
            operation=change["operation"],
            subject=assignment_pb2.Subject(**change["subject"]) if "subject" in change else None,
            grant=assignment_pb2.Grant(**change["grant"]) if "grant" in change else None,
        )
        budget -= entry.ByteSize() + _ITEM_OVERHEAD
        if budget < 0:
            info.changes_truncated = True
            break
        info.changes.append(entry)
    return info
