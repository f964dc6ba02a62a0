"""Our protos must be a wire-compatible superset of the SpaceONE 1.12 API.

The contract (a field-by-field dump of the published `spaceone-api` stubs) is
checked in beside this file; with POLICYHUB_WIRE_CONTRACT naming a fresh dump,
`test_checked_in_copy_matches_the_named_dump` shows whether the copy is still
identical to it. The comparison runs against the
descriptors of our generated modules (and the files they import, for the
well-known types the contract lists).
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass, field

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from policyhub._gen.spaceone.api.core.v1 import query_pb2
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2, repository_pb2

HERE = pathlib.Path(__file__).resolve().parent
CONTRACT_NAME = "spaceone-v1-wire-contract.txt"
CHECKED_IN = HERE / CONTRACT_NAME
OUR_MODULES = (policy_pb2, repository_pb2, query_pb2)


# --- contract model and parser ------------------------------------------------


@dataclass
class Field:
    number: int
    label: str  # "optional" | "repeated" | "required"
    type: str  # scalar name ("string"), "message <full name>" or "enum <full name>"
    is_map: bool = False
    oneof: str | None = None


@dataclass
class Model:
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (package, syntax)
    # service -> rpc -> (input, output, (verb, path, body) | None)
    services: dict[str, dict[str, tuple]] = field(default_factory=dict)
    messages: dict[str, dict[str, Field]] = field(default_factory=dict)  # message -> name -> Field
    enums: dict[str, dict[str, int]] = field(default_factory=dict)  # enum -> value -> number


FILE_RE = re.compile(r"file (\S+)\s+package (\S+)\s+syntax (\S+)$")
RPC_RE = re.compile(
    r"rpc (\w+)\((\S+)\) returns \((\S+)\) "
    r"(?:\(no google\.api\.http option\)|http=(\w+):(\S+) body:(\S*))$"
)
FIELD_RE = re.compile(r"(\d+)\s+(\w+)\s+(optional|repeated|required)\s+(.+)$")
VALUE_RE = re.compile(r"(\w+) = (-?\d+)$")


def parse_contract(text: str) -> Model:
    """Parse the contract dump. Unknown lines raise, so a format change cannot pass silently."""
    model = Model()
    service = message = enum = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "====", "imports:")) or line == "Referenced well-known types":
            continue
        if m := FILE_RE.fullmatch(line):
            model.files[m[1]] = (m[2], m[3])
        elif line.startswith("service "):
            service, message, enum = line.split()[1], None, None
            model.services[service] = {}
        elif m := RPC_RE.fullmatch(line):
            if service is None:
                raise ValueError(f"contract line {lineno}: rpc outside a service: {raw!r}")
            http = (m[4], m[5], m[6]) if m[4] else None
            model.services[service][m[1]] = (m[2], m[3], http)
        elif line.startswith("full path: "):
            rpc = next(reversed(model.services[service]))
            if line != f"full path: /{service}/{rpc}":
                raise ValueError(f"contract line {lineno}: inconsistent full path: {raw!r}")
        elif line.startswith("message "):
            message, enum = line.split()[1], None
            model.messages[message] = {}
        elif line.startswith("enum "):
            message, enum = None, line.split()[1]
            model.enums[enum] = {}
        elif (m := FIELD_RE.fullmatch(line)) and message is not None:
            tokens = m[4].split()
            if tokens[0] in ("message", "enum"):
                type_, tokens = f"{tokens[0]} {tokens[1]}", tokens[2:]
            else:
                type_, tokens = tokens[0], tokens[1:]
            f = Field(int(m[1]), m[3], type_)
            for token in tokens:
                if token == "(map)":
                    f.is_map = True
                elif token.startswith("oneof="):
                    f.oneof = token.removeprefix("oneof=")
                else:
                    raise ValueError(f"contract line {lineno}: unknown field attribute {token!r}")
            model.messages[message][m[2]] = f
        elif (m := VALUE_RE.fullmatch(line)) and enum is not None:
            model.enums[enum][m[1]] = int(m[2])
        else:
            raise ValueError(f"contract line {lineno}: cannot parse {raw!r}")
    return model


# --- our side: descriptors of the generated modules ---------------------------


def our_model(modules=OUR_MODULES) -> Model:
    """Same model, built from the generated modules and every file they import."""
    model = Model()
    seen: set[str] = set()
    pending = [module.DESCRIPTOR for module in modules]
    while pending:
        file_desc = pending.pop()
        if file_desc.name in seen:
            continue
        seen.add(file_desc.name)
        pending.extend(file_desc.dependencies)
        proto = descriptor_pb2.FileDescriptorProto()
        file_desc.CopyToProto(proto)
        model.files[proto.name] = (proto.package, proto.syntax or "proto2")
        prefix = f"{proto.package}." if proto.package else ""
        for service in proto.service:
            rpcs = model.services[prefix + service.name] = {}
            for method in service.method:
                rpcs[method.name] = (method.input_type[1:], method.output_type[1:], _http(method))
        for enum in proto.enum_type:
            _add_enum(model, prefix, enum)
        for message in proto.message_type:
            _add_message(model, prefix, message)
    return model


def _http(method: descriptor_pb2.MethodDescriptorProto):
    if not method.options.HasExtension(annotations_pb2.http):
        return None
    rule = method.options.Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    return (verb, getattr(rule, verb), rule.body) if verb else None


def _add_enum(model: Model, prefix: str, enum: descriptor_pb2.EnumDescriptorProto) -> None:
    model.enums[prefix + enum.name] = {value.name: value.number for value in enum.value}


def _add_message(model: Model, prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
    full = prefix + message.name
    map_entries = {f".{full}.{nested.name}" for nested in message.nested_type if nested.options.map_entry}
    fields = model.messages[full] = {}
    for f in message.field:
        if f.type in (f.TYPE_MESSAGE, f.TYPE_ENUM, f.TYPE_GROUP):
            kind = "enum" if f.type == f.TYPE_ENUM else "message"
            type_ = f"{kind} {f.type_name[1:]}"
        else:
            type_ = descriptor_pb2.FieldDescriptorProto.Type.Name(f.type).removeprefix("TYPE_").lower()
        label = descriptor_pb2.FieldDescriptorProto.Label.Name(f.label).removeprefix("LABEL_").lower()
        # proto3 `optional` makes a synthetic oneof; that is wire-neutral, not oneof membership.
        oneof = None if not f.HasField("oneof_index") or f.proto3_optional else message.oneof_decl[f.oneof_index].name
        fields[f.name] = Field(f.number, label, type_, f.type_name in map_entries, oneof)
    for nested in message.nested_type:
        _add_message(model, f"{full}.", nested)
    for enum in message.enum_type:
        _add_enum(model, f"{full}.", enum)


# --- comparator -----------------------------------------------------------------


def compare(contract: Model, ours: Model) -> list[str]:
    """Every way in which `ours` is not a wire-compatible superset of `contract`."""
    diffs: list[str] = []
    for path, (package, syntax) in contract.files.items():
        if path not in ours.files:
            diffs.append(f"file {path}: missing")
        elif ours.files[path] != (package, syntax):
            diffs.append(f"file {path}: (package, syntax) {ours.files[path]} != contract {(package, syntax)}")
    for service, rpcs in contract.services.items():
        if service not in ours.services:
            diffs.append(f"service {service}: missing")
            continue
        for rpc, (in_, out, http) in rpcs.items():
            mine = ours.services[service].get(rpc)
            if mine is None:
                diffs.append(f"rpc {service}/{rpc}: missing")
                continue
            if mine[:2] != (in_, out):
                diffs.append(f"rpc {service}/{rpc}: types ({mine[0]}) -> ({mine[1]}) != contract ({in_}) -> ({out})")
            if http is not None and mine[2] != http:
                diffs.append(f"rpc {service}/{rpc}: google.api.http {mine[2]} != contract {http}")
    for message, fields in contract.messages.items():
        if message not in ours.messages:
            diffs.append(f"message {message}: missing")
            continue
        mine = ours.messages[message]
        for name, want in fields.items():
            got = mine.get(name)
            if got is None:
                diffs.append(f"field {message}.{name}: missing (contract #{want.number})")
                continue
            for attr in ("number", "label", "type", "is_map", "oneof"):
                if getattr(got, attr) != getattr(want, attr):
                    diffs.append(
                        f"field {message}.{name}: {attr} {getattr(got, attr)!r} != contract {getattr(want, attr)!r}"
                    )
        contract_numbers = {f.number: name for name, f in fields.items()}
        for name, got in mine.items():
            owner = contract_numbers.get(got.number)
            if owner is not None and owner != name:
                diffs.append(f"field {message}.{name}: reuses contract number {got.number} (of {owner!r})")
    for enum, values in contract.enums.items():
        if enum not in ours.enums:
            diffs.append(f"enum {enum}: missing")
            continue
        mine = ours.enums[enum]
        for name, number in values.items():
            if name not in mine:
                diffs.append(f"enum value {enum}.{name}: missing (contract = {number})")
            elif mine[name] != number:
                diffs.append(f"enum value {enum}.{name}: {mine[name]} != contract {number}")
        contract_numbers = {number: name for name, number in values.items()}
        for name, number in mine.items():
            owner = contract_numbers.get(number)
            if owner is not None and owner != name:
                diffs.append(f"enum value {enum}.{name}: reuses contract number {number} (of {owner!r})")
    return diffs


def _fail_on(diffs: list[str]) -> None:
    if diffs:
        pytest.fail(f"{len(diffs)} wire-contract difference(s):\n  " + "\n  ".join(diffs), pytrace=False)


# --- tests --------------------------------------------------------------------------


def test_our_protos_are_a_superset_of_the_contract():
    contract = parse_contract(CHECKED_IN.read_text())
    assert len(contract.services) >= 2 and len(contract.messages) >= 40, "contract parsed suspiciously small"
    _fail_on(compare(contract, our_model()))


def _named_dump() -> pathlib.Path | None:
    configured = os.environ.get("POLICYHUB_WIRE_CONTRACT")
    if not configured:
        return None
    path = pathlib.Path(configured)
    assert path.is_file(), f"POLICYHUB_WIRE_CONTRACT={configured} is not a file"
    return path


def test_checked_in_copy_matches_the_named_dump():
    original = _named_dump()
    if original is None:
        pytest.skip(f"no dump named by POLICYHUB_WIRE_CONTRACT; using {CHECKED_IN}")
    assert CHECKED_IN.read_text() == original.read_text(), (
        f"{CHECKED_IN} differs from {original}: copy the original over it"
    )


# (old text, new text, a fragment the comparator must report)
ALTERATIONS = [
    (
        "   32  updated_at           optional  string",
        "   33  updated_at           optional  string",
        "PolicyInfo.updated_at: number 32 != contract 33",
    ),
    (
        "   31  created_at           optional  string",
        "   31  created_time         optional  string",
        "PolicyInfo.created_at: reuses contract number 31 (of 'created_time')",
    ),
    (
        "rpc stat(spaceone.api.repository.v1.PolicyStatQuery)",
        "rpc statistics(spaceone.api.repository.v1.PolicyStatQuery)",
        "rpc spaceone.api.repository.v1.Policy/statistics: missing",
    ),
    (
        "full path: /spaceone.api.repository.v1.Policy/stat\n",
        "full path: /spaceone.api.repository.v1.Policy/statistics\n",
        None,
    ),
    (
        "rpc get(spaceone.api.repository.v1.GetRepositoryRequest)",
        "rpc get(spaceone.api.repository.v1.RepositoryRequest)",
        "rpc spaceone.api.repository.v1.Repository/get: types",
    ),
    (
        "http=post:/repository/v1/policy/list body:*",
        "http=post:/repository/v1/policy/search body:*",
        "rpc spaceone.api.repository.v1.Policy/list: google.api.http",
    ),
    (
        "    5  distinct             optional  string",
        "    5  distinct             optional  int64",
        "StatisticsQuery.distinct: type 'string' != contract 'int64'",
    ),
    (
        "    7  only                 repeated  string",
        "    7  only                 optional  string",
        "Query.only: label 'repeated' != contract 'optional'",
    ),
    (
        "    5  date_format          optional  string",
        "    5  date_format          optional  string oneof=format_alias",
        "AggregateGroupKey.date_format: oneof None != contract 'format_alias'",
    ),
    (
        "google.protobuf.Struct.FieldsEntry (map)",
        "google.protobuf.Struct.FieldsEntry",
        "google.protobuf.Struct.fields: is_map True != contract False",
    ),
    ("    YEARLY = 3", "    YEARLY = 4", "Granularity.YEARLY: 3 != contract 4"),
    (
        "message spaceone.api.repository.v1.PoliciesInfo",
        "message spaceone.api.repository.v1.PolicyList",
        "message spaceone.api.repository.v1.PolicyList: missing",
    ),
]


def test_comparator_reports_every_alteration():
    text = CHECKED_IN.read_text()
    for old, new, _ in ALTERATIONS:
        assert text.count(old) == 1, f"alteration anchor not unique in contract: {old!r}"
        text = text.replace(old, new)
    diffs = compare(parse_contract(text), our_model())
    report = "\n".join(diffs)
    for _, _, expected in ALTERATIONS:
        if expected:
            assert expected in report, f"comparator missed {expected!r}; it reported:\n{report}"


def test_parser_rejects_unknown_lines():
    with pytest.raises(ValueError, match="cannot parse"):
        parse_contract(CHECKED_IN.read_text() + "\nsomething new in the format\n")
