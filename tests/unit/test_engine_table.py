"""The evaluation engine, case by case: a table of small graphs + policies + one question
-> the expected decision (allowed, reason, deciding policy, statement index, via path);
then the list questions (authorized resources, subjects holding, who can, effective
statements, reachable) and the index's housekeeping (expiry, validation, threads)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from policyhub.engine import (
    AuthorizedException,
    AuthorizedResource,
    Decision,
    DomainIndex,
    Edge,
    EffectiveStatement,
    PolicyRules,
    Statement,
    Subject,
    SubjectDecision,
    SubjectGrant,
)
from policyhub.engine.conditions import UNREADABLE

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
PAST = NOW - timedelta(days=1)
FUTURE = NOW + timedelta(days=1)
TYPES = {"U": "USER", "G": "GROUP", "R": "ROLE", "SA": "SERVICE_ACCOUNT"}


def S(text: str) -> Subject:
    kind, _, ident = text.partition(":")
    return Subject(TYPES[kind], ident)


def path(text: str) -> tuple[Subject, ...]:
    return tuple(S(part) for part in text.split(">")) if text else ()


def A(actions, resources) -> dict:
    return {"effect": "ALLOW", "actions": _list(actions), "resources": _list(resources)}


def D(actions, resources) -> dict:
    return {"effect": "DENY", "actions": _list(actions), "resources": _list(resources)}


def _list(value):
    return [value] if isinstance(value, str) else list(value)


@dataclass
class Pol:
    statements: list = field(default_factory=list)
    permissions: list = field(default_factory=list)
    enabled: bool = True


def P(*statements, perms=(), enabled=True) -> Pol:
    return Pol(list(statements), list(perms), enabled)


def build(policies: dict[str, Pol], edges: list[tuple], now: datetime = NOW) -> DomainIndex:
    rules = [
        PolicyRules.from_policy(pid, p.statements, p.permissions, enabled=p.enabled) for pid, p in policies.items()
    ]
    built = []
    for edge in edges:
        subject, grant_type, grant_id, *rest = edge
        expires = {"past": PAST, "future": FUTURE, "now": NOW, None: None}[rest[0] if rest else None]
        built.append(Edge(S(subject), grant_type, grant_id, expires))
    return DomainIndex(rules, built, now)


# ---------------------------------------------------------------------------- scenarios

DIRECT = ({"p-read": P(A("inventory.server.read", "srv/*"))}, [("U:alice", "POLICY", "p-read")])

ROLE = (
    {"p-admin": P(A("*", "*"))},
    [("R:admin", "POLICY", "p-admin"), ("U:alice", "ROLE", "admin"), ("SA:ci", "ROLE", "admin")],
)

GROUP = (
    {"p-dev": P(A("repo.*", "repo/*"))},
    [("G:devs", "POLICY", "p-dev"), ("U:dana", "GROUP", "devs"), ("SA:bot", "GROUP", "devs")],
)

NESTED = (
    {"p-top": P(A("docs.*", "doc/*"))},
    [("G:l1", "GROUP", "l2"), ("G:l2", "GROUP", "l3"), ("G:l3", "POLICY", "p-top"), ("U:u", "GROUP", "l1")],
)

ROLE_IN_GROUP = (
    {"p-eng": P(A("build.run", "job/*"))},
    [("R:ops", "GROUP", "eng"), ("G:eng", "POLICY", "p-eng"), ("U:x", "ROLE", "ops")],
)

CYCLE = (
    {"p-b": P(A("wiki.*", "*")), "p-a": P(D("wiki.delete", "page/locked"))},
    [
        ("G:a", "GROUP", "b"),
        ("G:b", "GROUP", "a"),
        ("G:b", "POLICY", "p-b"),
        ("G:a", "POLICY", "p-a"),
        ("U:u", "GROUP", "a"),
        ("G:c", "GROUP", "c"),
        ("G:c", "POLICY", "p-b"),
        ("U:v", "GROUP", "c"),
    ],
)

DENY_SAME_LEVEL = (
    {"p-allow": P(A("s3.*", "bucket/*")), "p-deny": P(D("s3.delete*", "bucket/prod/*"))},
    [("U:alice", "POLICY", "p-allow"), ("U:alice", "POLICY", "p-deny")],
)

DENY_LEVELS = (
    {
        "p-all": P(A("*", "*")),
        "z-deny": P(D("*", "secret/*")),
        "g-allow": P(A("vault.*", "vault/*")),
        "u-deny": P(D("vault.destroy", "vault/*")),
    },
    [
        ("U:alice", "POLICY", "p-all"),
        ("U:alice", "GROUP", "staff"),
        ("G:staff", "GROUP", "everyone"),
        ("G:everyone", "POLICY", "z-deny"),
        ("U:bob", "POLICY", "u-deny"),
        ("U:bob", "GROUP", "vaulters"),
        ("G:vaulters", "POLICY", "g-allow"),
    ],
)

PERMISSIONS = (
    {
        "p-mix": P(A("a.x", "r1"), D("a.y", "*"), perms=["identity.*", "inventory.Server.read"]),
        "p-star": P(perms=["*"]),
        "p-q": P(perms=["svc.?"]),
    },
    [("U:m", "POLICY", "p-mix"), ("U:s", "POLICY", "p-star"), ("U:q", "POLICY", "p-q")],
)

DISABLED = (
    {"p-off": P(A("*", "*"), enabled=False), "p-on": P(A("*", "*")), "p-off-deny": P(D("*", "*"), enabled=False)},
    [
        ("U:u", "POLICY", "p-off"),
        ("U:v", "POLICY", "p-on"),
        ("U:v", "POLICY", "p-off-deny"),
        ("G:g", "POLICY", "p-off"),
        ("U:w", "GROUP", "g"),
    ],
)

EXPIRY = (
    {"p": P(A("*", "*")), "deny": P(D("x.*", "*"))},
    [
        ("U:past", "POLICY", "p", "past"),
        ("U:future", "POLICY", "p", "future"),
        ("U:now", "POLICY", "p", "now"),
        ("U:gone", "GROUP", "g", "past"),
        ("G:g", "POLICY", "p"),
        ("U:stay", "GROUP", "g", "future"),
        ("U:mid", "GROUP", "g1"),
        ("G:g1", "GROUP", "g", "past"),
        ("U:d", "POLICY", "p"),
        ("U:d", "POLICY", "deny", "past"),
    ],
)

MISSING = (
    {"p-real": P(A("*", "*"))},
    [("U:u", "POLICY", "p-ghost"), ("U:v", "POLICY", "p-ghost"), ("U:v", "POLICY", "p-real")],
)

QMARK = ({"p-q": P(A("svc.?et", "item/??"))}, [("U:u", "POLICY", "p-q")])

NOTHING = ({"p": P(A("*", "*"))}, [("U:lonely", "GROUP", "empty"), ("G:other", "POLICY", "p")])

CHAIN = (
    {
        "p-z": P(A("*", "*")),
        "p-a": P(A("*", "*")),
        "p-b": P(A("*", "*")),
        "p-two": P(A("x.*", "r"), A("x.y", "r"), A("x.y", "*")),
        "d-far": P(D("*", "*")),
        "d-near-b": P(D("*", "*")),
        "d-near-a": P(D("*", "*")),
    },
    [  # shortest path beats a smaller policy id
        ("U:short", "POLICY", "p-z"),
        ("U:short", "GROUP", "g"),
        ("G:g", "POLICY", "p-a"),
        # same depth: smallest policy id
        ("U:ids", "POLICY", "p-b"),
        ("U:ids", "POLICY", "p-a"),
        # same policy: smallest statement index
        ("U:idx", "POLICY", "p-two"),
        # same policy through two groups at the same depth: lexicographically smallest path
        ("U:twin", "GROUP", "g2"),
        ("U:twin", "GROUP", "g1"),
        ("G:g1", "POLICY", "p-b"),
        ("G:g2", "POLICY", "p-b"),
        # GROUP sorts before ROLE
        ("U:gr", "ROLE", "r"),
        ("U:gr", "GROUP", "h"),
        ("R:r", "POLICY", "p-b"),
        ("G:h", "POLICY", "p-b"),
        # held directly and through a group: the direct holding is reported
        ("U:both", "POLICY", "p-b"),
        ("U:both", "GROUP", "g1"),
        # denies: nearer deny wins, then the smaller id
        ("U:den", "GROUP", "far1"),
        ("G:far1", "GROUP", "far2"),
        ("G:far2", "POLICY", "d-far"),
        ("U:den", "POLICY", "d-near-b"),
        ("U:den", "POLICY", "d-near-a"),
        # a deep deny beats a direct allow
        ("U:deep", "POLICY", "p-a"),
        ("U:deep", "GROUP", "far1"),
        # longer path through a smaller id loses to the shorter path
        ("U:lex", "GROUP", "a1"),
        ("G:a1", "GROUP", "a2"),
        ("G:a2", "POLICY", "p-a"),
        ("U:lex", "GROUP", "zz"),
        ("G:zz", "POLICY", "p-z"),
    ],
)

MULTI = ({"p-m": P(A(["a.read", "b.*"], ["r1", "r2/*"]), A("c.*", []), A([], "*"))}, [("U:u", "POLICY", "p-m")])

BUCKETS = (
    {
        "p-seg": P(A("a.b.*", "r")),
        "p-catch": P(A("inventory*", "r")),
        "p-exact": P(A("inventory", "x")),
        "p-suffix": P(A("*.read", "s")),
        "q-a": P(A("x.y", "t")),
        "q-b": P(A("*", "t")),
        "q-c": P(A("x.*", "t")),
        "w-idx": P(A("*", "w"), A("k.v", "w")),
        "w-idx2": P(A("k.v", "v"), A("k.*", "v"), A("*", "v")),
    },
    [
        ("U:u", "POLICY", "p-seg"),
        ("U:u", "POLICY", "p-catch"),
        ("U:u", "POLICY", "p-exact"),
        ("U:u", "POLICY", "p-suffix"),
        ("U:t1", "POLICY", "q-b"),
        ("U:t1", "POLICY", "q-a"),
        ("U:t2", "POLICY", "q-c"),
        ("U:t2", "POLICY", "q-b"),
        ("U:t3", "POLICY", "q-a"),
        ("U:t3", "POLICY", "q-c"),
        ("U:w", "POLICY", "w-idx"),
        ("U:w", "POLICY", "w-idx2"),
    ],
)

SPECIAL = ({"p-re": P(A("a.b+c", "r.(1)|[x]"), A("q.*", "arn:aws:*:*"))}, [("U:u", "POLICY", "p-re")])

OK, DENY, NONE = "ALLOWED", "EXPLICIT_DENY", "NO_MATCHING_ALLOW"

CASES = [
    # --- direct policy
    ("direct allow", DIRECT, "U:alice", "inventory.server.read", "srv/1", OK, "p-read", 0, "U:alice"),
    ("direct: other action", DIRECT, "U:alice", "inventory.server.delete", "srv/1", NONE),
    ("direct: other resource", DIRECT, "U:alice", "inventory.server.read", "db/1", NONE),
    (
        "direct: action case-insensitive",
        DIRECT,
        "U:alice",
        "INVENTORY.Server.READ",
        "srv/1",
        OK,
        "p-read",
        0,
        "U:alice",
    ),
    ("direct: resource case-sensitive", DIRECT, "U:alice", "inventory.server.read", "SRV/1", NONE),
    ("direct: * matches empty", DIRECT, "U:alice", "inventory.server.read", "srv/", OK, "p-read", 0, "U:alice"),
    (
        "direct: * crosses / and :",
        DIRECT,
        "U:alice",
        "inventory.server.read",
        "srv/a/b:c.d",
        OK,
        "p-read",
        0,
        "U:alice",
    ),
    ("direct: action prefix only", DIRECT, "U:alice", "inventory.server", "srv/1", NONE),
    ("direct: action longer", DIRECT, "U:alice", "inventory.server.read.all", "srv/1", NONE),
    ("unknown user", DIRECT, "U:bob", "inventory.server.read", "srv/1", NONE),
    ("same id other type: group", DIRECT, "G:alice", "inventory.server.read", "srv/1", NONE),
    ("same id other type: service account", DIRECT, "SA:alice", "inventory.server.read", "srv/1", NONE),
    # --- via role
    ("via role", ROLE, "U:alice", "anything.at.all", "x/y", OK, "p-admin", 0, "U:alice>R:admin"),
    ("service account via role", ROLE, "SA:ci", "deploy.run", "env/prod", OK, "p-admin", 0, "SA:ci>R:admin"),
    ("role itself", ROLE, "R:admin", "x", "y", OK, "p-admin", 0, "R:admin"),
    ("role: unrelated user", ROLE, "U:bob", "x", "y", NONE),
    ("role: * matches empty action", ROLE, "U:alice", "", "", OK, "p-admin", 0, "U:alice>R:admin"),
    ("role: member type matters", ROLE, "SA:alice", "x", "y", NONE),
    # --- via group
    ("via group", GROUP, "U:dana", "repo.push", "repo/core", OK, "p-dev", 0, "U:dana>G:devs"),
    ("service account via group", GROUP, "SA:bot", "repo.pull", "repo/x", OK, "p-dev", 0, "SA:bot>G:devs"),
    ("group itself", GROUP, "G:devs", "repo.pull", "repo/x", OK, "p-dev", 0, "G:devs"),
    ("group: wrong resource", GROUP, "U:dana", "repo.push", "wiki/x", NONE),
    ("group: wrong action segment", GROUP, "U:dana", "repox.push", "repo/x", NONE),
    ("group: role with same id is different", GROUP, "R:devs", "repo.push", "repo/x", NONE),
    # --- group in group, 3 levels
    ("nested: user 4 hops", NESTED, "U:u", "docs.read", "doc/1", OK, "p-top", 0, "U:u>G:l1>G:l2>G:l3"),
    ("nested: l1", NESTED, "G:l1", "docs.edit", "doc/1", OK, "p-top", 0, "G:l1>G:l2>G:l3"),
    ("nested: l2", NESTED, "G:l2", "docs.edit", "doc/1", OK, "p-top", 0, "G:l2>G:l3"),
    ("nested: l3", NESTED, "G:l3", "docs.edit", "doc/1", OK, "p-top", 0, "G:l3"),
    ("nested: wrong resource", NESTED, "U:u", "docs.read", "img/1", NONE),
    ("nested: wrong action", NESTED, "U:u", "other.read", "doc/1", NONE),
    ("nested: action case", NESTED, "U:u", "DOCS.Read", "doc/1", OK, "p-top", 0, "U:u>G:l1>G:l2>G:l3"),
    # --- role in group
    ("role in group: user", ROLE_IN_GROUP, "U:x", "build.run", "job/7", OK, "p-eng", 0, "U:x>R:ops>G:eng"),
    ("role in group: role", ROLE_IN_GROUP, "R:ops", "build.run", "job/7", OK, "p-eng", 0, "R:ops>G:eng"),
    ("role in group: group", ROLE_IN_GROUP, "G:eng", "build.run", "job/7", OK, "p-eng", 0, "G:eng"),
    ("role in group: wrong action", ROLE_IN_GROUP, "U:x", "build.cancel", "job/7", NONE),
    ("role in group: group named like role", ROLE_IN_GROUP, "G:ops", "build.run", "job/7", NONE),
    # --- cycles
    ("cycle: user through cycle", CYCLE, "U:u", "wiki.read", "page/1", OK, "p-b", 0, "U:u>G:a>G:b"),
    ("cycle: b holds directly", CYCLE, "G:b", "wiki.read", "page/1", OK, "p-b", 0, "G:b"),
    ("cycle: a via b", CYCLE, "G:a", "wiki.read", "page/1", OK, "p-b", 0, "G:a>G:b"),
    ("cycle: deny reaches b around the cycle", CYCLE, "G:b", "wiki.delete", "page/locked", DENY, "p-a", 0, "G:b>G:a"),
    ("cycle: user denied", CYCLE, "U:u", "wiki.delete", "page/locked", DENY, "p-a", 0, "U:u>G:a"),
    ("cycle: other page allowed", CYCLE, "U:u", "wiki.delete", "page/open", OK, "p-b", 0, "U:u>G:a>G:b"),
    ("self loop", CYCLE, "U:v", "wiki.read", "p", OK, "p-b", 0, "U:v>G:c"),
    ("self loop: group", CYCLE, "G:c", "wiki.read", "p", OK, "p-b", 0, "G:c"),
    ("cycle: unrelated action", CYCLE, "U:u", "blog.read", "page/1", NONE),
    # --- deny overrides allow, same level
    ("deny: allowed get", DENY_SAME_LEVEL, "U:alice", "s3.get", "bucket/prod/x", OK, "p-allow", 0, "U:alice"),
    (
        "deny: delete denied",
        DENY_SAME_LEVEL,
        "U:alice",
        "s3.deleteObject",
        "bucket/prod/x",
        DENY,
        "p-deny",
        0,
        "U:alice",
    ),
    (
        "deny: action case-insensitive",
        DENY_SAME_LEVEL,
        "U:alice",
        "S3.DeleteObject",
        "bucket/prod/x",
        DENY,
        "p-deny",
        0,
        "U:alice",
    ),
    (
        "deny: other prefix allowed",
        DENY_SAME_LEVEL,
        "U:alice",
        "s3.deleteObject",
        "bucket/dev/x",
        OK,
        "p-allow",
        0,
        "U:alice",
    ),
    (
        "deny: resource case-sensitive",
        DENY_SAME_LEVEL,
        "U:alice",
        "s3.deleteObject",
        "bucket/Prod/x",
        OK,
        "p-allow",
        0,
        "U:alice",
    ),
    (
        "deny: deny exactly on prefix",
        DENY_SAME_LEVEL,
        "U:alice",
        "s3.delete",
        "bucket/prod/",
        DENY,
        "p-deny",
        0,
        "U:alice",
    ),
    ("deny: nothing outside allow", DENY_SAME_LEVEL, "U:alice", "s3.get", "other/x", NONE),
    (
        "deny: deny alone without allow",
        DENY_SAME_LEVEL,
        "U:alice",
        "s3.delete",
        "bucket/prod/y",
        DENY,
        "p-deny",
        0,
        "U:alice",
    ),
    # --- deny overrides allow across membership levels
    (
        "deny from 3 hops beats direct allow",
        DENY_LEVELS,
        "U:alice",
        "docs.read",
        "secret/1",
        DENY,
        "z-deny",
        0,
        "U:alice>G:staff>G:everyone",
    ),
    ("direct allow elsewhere", DENY_LEVELS, "U:alice", "docs.read", "public/1", OK, "p-all", 0, "U:alice"),
    ("group deny applies to group", DENY_LEVELS, "G:staff", "x", "secret/2", DENY, "z-deny", 0, "G:staff>G:everyone"),
    ("group: no allow", DENY_LEVELS, "G:staff", "x", "public/2", NONE),
    ("direct deny beats group allow", DENY_LEVELS, "U:bob", "vault.destroy", "vault/1", DENY, "u-deny", 0, "U:bob"),
    ("group allow otherwise", DENY_LEVELS, "U:bob", "vault.open", "vault/1", OK, "g-allow", 0, "U:bob>G:vaulters"),
    (
        "group without the user deny",
        DENY_LEVELS,
        "G:vaulters",
        "vault.destroy",
        "vault/1",
        OK,
        "g-allow",
        0,
        "G:vaulters",
    ),
    # --- permissions strings
    ("permissions: statement 0", PERMISSIONS, "U:m", "a.x", "r1", OK, "p-mix", 0, "U:m"),
    ("permissions: statement 0 resource", PERMISSIONS, "U:m", "a.x", "r2", NONE),
    ("permissions: deny statement 1", PERMISSIONS, "U:m", "a.y", "anything", DENY, "p-mix", 1, "U:m"),
    (
        "permissions: first permission is index 2",
        PERMISSIONS,
        "U:m",
        "identity.user.get",
        "any/thing",
        OK,
        "p-mix",
        2,
        "U:m",
    ),
    (
        "permissions: second permission is index 3",
        PERMISSIONS,
        "U:m",
        "inventory.server.read",
        "srv/1",
        OK,
        "p-mix",
        3,
        "U:m",
    ),
    (
        "permissions: permission case-insensitive",
        PERMISSIONS,
        "U:m",
        "INVENTORY.SERVER.READ",
        "x",
        OK,
        "p-mix",
        3,
        "U:m",
    ),
    ("permissions: on every resource", PERMISSIONS, "U:m", "identity.x", "", OK, "p-mix", 2, "U:m"),
    ("permissions: not granted", PERMISSIONS, "U:m", "inventory.server.delete", "srv/1", NONE),
    ("permissions: star only", PERMISSIONS, "U:s", "whatever.you.like", "r", OK, "p-star", 0, "U:s"),
    ("permissions: ? one char", PERMISSIONS, "U:q", "svc.x", "r", OK, "p-q", 0, "U:q"),
    ("permissions: ? not two chars", PERMISSIONS, "U:q", "svc.xy", "r", NONE),
    ("permissions: ? not zero chars", PERMISSIONS, "U:q", "svc.", "r", NONE),
    # --- disabled policies
    ("disabled allow grants nothing", DISABLED, "U:u", "x", "y", NONE),
    ("disabled deny denies nothing", DISABLED, "U:v", "x", "y", OK, "p-on", 0, "U:v"),
    ("disabled through group", DISABLED, "U:w", "x", "y", NONE),
    ("disabled held by group", DISABLED, "G:g", "x", "y", NONE),
    # --- expiry
    ("expired policy edge", EXPIRY, "U:past", "a", "b", NONE),
    ("future expiry applies", EXPIRY, "U:future", "a", "b", OK, "p", 0, "U:future"),
    ("expiry exactly now is expired", EXPIRY, "U:now", "a", "b", NONE),
    ("expired membership", EXPIRY, "U:gone", "a", "b", NONE),
    ("future membership", EXPIRY, "U:stay", "a", "b", OK, "p", 0, "U:stay>G:g"),
    ("expired edge in the middle of a chain", EXPIRY, "U:mid", "a", "b", NONE),
    ("group of an expired chain still holds", EXPIRY, "G:g", "a", "b", OK, "p", 0, "G:g"),
    ("expired deny does not deny", EXPIRY, "U:d", "x.y", "b", OK, "p", 0, "U:d"),
    # --- missing policy
    ("missing policy grants nothing", MISSING, "U:u", "a", "b", NONE),
    ("missing policy next to a real one", MISSING, "U:v", "a", "b", OK, "p-real", 0, "U:v"),
    # --- ?
    ("? matches one char", QMARK, "U:u", "svc.get", "item/ab", OK, "p-q", 0, "U:u"),
    ("? any char", QMARK, "U:u", "svc.Set", "item/a/", OK, "p-q", 0, "U:u"),
    ("? too many chars", QMARK, "U:u", "svc.gett", "item/ab", NONE),
    ("?? too few chars", QMARK, "U:u", "svc.get", "item/a", NONE),
    ("?? too many chars", QMARK, "U:u", "svc.get", "item/abc", NONE),
    ("? needs a char", QMARK, "U:u", "svc.et", "item/ab", NONE),
    # --- users with nothing
    ("member of an empty group", NOTHING, "U:lonely", "a", "b", NONE),
    ("the empty group", NOTHING, "G:empty", "a", "b", NONE),
    ("not a member", NOTHING, "U:stranger", "a", "b", NONE),
    ("holder is unrelated", NOTHING, "G:other", "a", "b", OK, "p", 0, "G:other"),
    # --- deterministic chain choice
    ("shortest path beats smaller policy id", CHAIN, "U:short", "a", "b", OK, "p-z", 0, "U:short"),
    ("same depth: smaller policy id", CHAIN, "U:ids", "a", "b", OK, "p-a", 0, "U:ids"),
    ("same policy: smaller statement index", CHAIN, "U:idx", "x.y", "r", OK, "p-two", 0, "U:idx"),
    ("same policy: next index when first misses", CHAIN, "U:idx", "x.y", "other", OK, "p-two", 2, "U:idx"),
    ("same depth twin groups: smaller path", CHAIN, "U:twin", "a", "b", OK, "p-b", 0, "U:twin>G:g1"),
    ("GROUP sorts before ROLE", CHAIN, "U:gr", "a", "b", OK, "p-b", 0, "U:gr>G:h"),
    ("direct holding beats group holding", CHAIN, "U:both", "a", "b", OK, "p-b", 0, "U:both"),
    ("nearer deny wins, then id", CHAIN, "U:den", "a", "b", DENY, "d-near-a", 0, "U:den"),
    ("deep deny beats direct allow", CHAIN, "U:deep", "a", "b", DENY, "d-far", 0, "U:deep>G:far1>G:far2"),
    ("group holding deny", CHAIN, "G:far1", "a", "b", DENY, "d-far", 0, "G:far1>G:far2"),
    ("shorter path beats smaller id deeper", CHAIN, "U:lex", "a", "b", OK, "p-z", 0, "U:lex>G:zz"),
    # --- several actions and resources per statement
    ("multi: second action, second resource", MULTI, "U:u", "b.write", "r2/x", OK, "p-m", 0, "U:u"),
    ("multi: first action, second resource", MULTI, "U:u", "a.read", "r2/x", OK, "p-m", 0, "U:u"),
    ("multi: first action, first resource", MULTI, "U:u", "a.read", "r1", OK, "p-m", 0, "U:u"),
    ("multi: action not listed", MULTI, "U:u", "a.write", "r1", NONE),
    ("multi: resource not listed", MULTI, "U:u", "a.read", "r3", NONE),
    ("multi: no resources never applies", MULTI, "U:u", "c.read", "r1", NONE),
    ("multi: no actions never applies", MULTI, "U:u", "z", "r1", NONE),
    # --- index buckets (exact, segment, catch-all) agree with the pattern rules
    ("bucket: segment pattern", BUCKETS, "U:u", "a.b.c", "r", OK, "p-seg", 0, "U:u"),
    ("bucket: segment pattern, case", BUCKETS, "U:u", "A.B.C", "r", OK, "p-seg", 0, "U:u"),
    ("bucket: segment pattern needs the dot", BUCKETS, "U:u", "a.bc", "r", NONE),
    ("bucket: segment pattern, other segment", BUCKETS, "U:u", "a.c.b", "r", NONE),
    ("bucket: catch-all prefix crosses dot", BUCKETS, "U:u", "inventory.server.read", "r", OK, "p-catch", 0, "U:u"),
    ("bucket: catch-all prefix, no dot", BUCKETS, "U:u", "inventoryX", "r", OK, "p-catch", 0, "U:u"),
    ("bucket: exact without dot", BUCKETS, "U:u", "Inventory", "x", OK, "p-exact", 0, "U:u"),
    ("bucket: exact without dot vs longer", BUCKETS, "U:u", "inventory.x", "x", NONE),
    ("bucket: suffix pattern", BUCKETS, "U:u", "any.thing.read", "s", OK, "p-suffix", 0, "U:u"),
    ("bucket: suffix pattern, case", BUCKETS, "U:u", "ANY.READ", "s", OK, "p-suffix", 0, "U:u"),
    ("bucket: exact vs catch-all: smaller id wins", BUCKETS, "U:t1", "x.y", "t", OK, "q-a", 0, "U:t1"),
    ("bucket: segment vs catch-all: smaller id wins", BUCKETS, "U:t2", "x.y", "t", OK, "q-b", 0, "U:t2"),
    ("bucket: exact vs segment: smaller id wins", BUCKETS, "U:t3", "x.y", "t", OK, "q-a", 0, "U:t3"),
    ("bucket: only catch-all matches", BUCKETS, "U:t1", "z.z", "t", OK, "q-b", 0, "U:t1"),
    ("bucket: catch-all index 0 beats exact index 1", BUCKETS, "U:w", "k.v", "w", OK, "w-idx", 0, "U:w"),
    ("bucket: exact index 0 beats later indexes", BUCKETS, "U:w", "k.v", "v", OK, "w-idx2", 0, "U:w"),
    ("bucket: segment index 1 when exact misses", BUCKETS, "U:w", "k.x", "v", OK, "w-idx2", 1, "U:w"),
    ("bucket: catch-all index 2 when others miss", BUCKETS, "U:w", "j.x", "v", OK, "w-idx2", 2, "U:w"),
    # --- regex metacharacters are literal
    ("regex chars literal", SPECIAL, "U:u", "a.b+c", "r.(1)|[x]", OK, "p-re", 0, "U:u"),
    ("regex + is literal", SPECIAL, "U:u", "a.bbc", "r.(1)|[x]", NONE),
    ("regex . is literal in resource", SPECIAL, "U:u", "a.b+c", "rx(1)|[x]", NONE),
    ("arn-style resource", SPECIAL, "U:u", "q.read", "arn:aws:s3:bucket/x", OK, "p-re", 1, "U:u"),
    ("arn-style resource needs the colons", SPECIAL, "U:u", "q.read", "arn:aws:s3", NONE),
]


def _case_id(case) -> str:
    return case[0]


def test_table_is_large_and_ids_unique():
    assert len(CASES) >= 120
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_check_table(case):
    _name, (policies, edges), subject, action, resource, reason, *chain = case
    index = build(policies, edges)
    decision = index.check(S(subject), action, resource)
    if reason == NONE:
        expected = Decision(False, NONE)
    else:
        policy_id, statement_index, via = chain
        expected = Decision(reason == OK, reason, policy_id, statement_index, path(via))
    assert decision == expected
    # batch_check and a rebuilt index with reversed inputs answer the same
    assert index.batch_check([(S(subject), action, resource)]) == [expected]
    reversed_index = build(dict(reversed(list(policies.items()))), list(reversed(edges)))
    assert reversed_index.check(S(subject), action, resource) == expected


# ---------------------------------------------------------------------------- model helpers


def test_from_policy_builds_effective_statements():
    rules = PolicyRules.from_policy(
        "p",
        [D("a.*", ["r1", "r2"]), {"effect": "allow", "actions": ["b"], "resources": ["*"], "conditions": {"x": 1}}],
        ["identity.*", "inventory.Server.read"],
        enabled=False,
    )
    assert rules == PolicyRules(
        "p",
        (
            Statement("DENY", ("a.*",), ("r1", "r2")),
            # conditions that do not parse (checked when written) never let a statement apply
            Statement("ALLOW", ("b",), ("*",), UNREADABLE),
            Statement("ALLOW", ("identity.*",), ("*",)),
            Statement("ALLOW", ("inventory.Server.read",), ("*",)),
        ),
        False,
    )
    assert PolicyRules.from_policy("q", None, None) == PolicyRules("q", ())


def test_statement_validation_and_normalisation():
    with pytest.raises(ValueError):
        Statement("MAYBE", ("a",), ("b",))
    s = Statement("ALLOW", ["a"], ["b"])  # lists become tuples (hashable, immutable)
    assert s.actions == ("a",) and s.resources == ("b",)
    hash(s)
    assert PolicyRules("p", [s]).statements == (s,)


def test_subjects_order_by_type_then_id():
    assert sorted([S("U:a"), S("G:z"), S("R:b"), S("G:a"), S("SA:a")]) == [
        S("G:a"),
        S("G:z"),
        S("R:b"),
        S("SA:a"),
        S("U:a"),
    ]


def test_duplicate_policy_ids_are_refused():
    with pytest.raises(ValueError):
        DomainIndex([PolicyRules("p", ()), PolicyRules("p", ())], [], NOW)


def test_unknown_grant_type_is_refused():
    with pytest.raises(ValueError):
        DomainIndex([], [Edge(S("U:a"), "TEAM", "t")], NOW)


def test_naive_datetimes_are_utc():
    naive_now = datetime(2024, 5, 1, 12, 0)
    index = DomainIndex(
        [PolicyRules.from_policy("p", [], ["*"])],
        [
            Edge(S("U:a"), "POLICY", "p", datetime(2024, 5, 1, 13, 0)),
            Edge(S("U:b"), "POLICY", "p", datetime(2024, 5, 1, 11, 0, tzinfo=timezone.utc)),
        ],
        naive_now,
    )
    assert index.check(S("U:a"), "x", "y").allowed
    assert not index.check(S("U:b"), "x", "y").allowed
    assert index.next_expiry == datetime(2024, 5, 1, 13, 0, tzinfo=timezone.utc)


def test_other_timezones_compare_as_instants():
    plus2 = timezone(timedelta(hours=2))
    index = DomainIndex(
        [PolicyRules.from_policy("p", [], ["*"])],
        [
            Edge(S("U:a"), "POLICY", "p", datetime(2024, 5, 1, 13, 30, tzinfo=plus2)),  # 11:30 UTC
            Edge(S("U:b"), "POLICY", "p", datetime(2024, 5, 1, 14, 30, tzinfo=plus2)),
        ],  # 12:30 UTC
        NOW,
    )
    assert not index.check(S("U:a"), "x", "y").allowed
    assert index.check(S("U:b"), "x", "y").allowed


# ---------------------------------------------------------------------------- next_expiry


def test_next_expiry_is_the_earliest_future_expiry():
    index = build(*EXPIRY)
    assert index.next_expiry == FUTURE
    soon = NOW + timedelta(minutes=5)
    index = DomainIndex(
        [],
        [
            Edge(S("U:a"), "GROUP", "g", FUTURE),
            Edge(S("U:b"), "POLICY", "p", soon),
            Edge(S("U:c"), "POLICY", "p", PAST),
            Edge(S("U:d"), "POLICY", "p"),
        ],
        NOW,
    )
    assert index.next_expiry == soon


def test_next_expiry_none_without_future_expiries():
    assert build(*DIRECT).next_expiry is None
    assert DomainIndex([], [Edge(S("U:a"), "POLICY", "p", PAST)], NOW).next_expiry is None
    assert DomainIndex([], [], NOW).next_expiry is None


def test_rebuilding_after_next_expiry_drops_the_edge():
    index = build(*EXPIRY)
    assert index.check(S("U:future"), "a", "b").allowed
    later = build(*EXPIRY, now=index.next_expiry)
    assert not later.check(S("U:future"), "a", "b").allowed
    assert later.next_expiry is None


# ---------------------------------------------------------------------------- reachable


def test_reachable_gives_shortest_paths():
    index = build(*NESTED)
    assert index.reachable(S("U:u")) == {
        S("U:u"): path("U:u"),
        S("G:l1"): path("U:u>G:l1"),
        S("G:l2"): path("U:u>G:l1>G:l2"),
        S("G:l3"): path("U:u>G:l1>G:l2>G:l3"),
    }
    assert index.reachable(S("U:nobody")) == {S("U:nobody"): path("U:nobody")}


def test_reachable_with_cycles_and_shortcuts():
    index = build(
        {},
        [
            ("G:a", "GROUP", "b"),
            ("G:b", "GROUP", "a"),
            ("U:u", "GROUP", "a"),
            ("U:u", "GROUP", "b"),
            ("G:b", "GROUP", "c"),
        ],
    )
    assert index.reachable(S("U:u")) == {
        S("U:u"): path("U:u"),
        S("G:a"): path("U:u>G:a"),
        S("G:b"): path("U:u>G:b"),
        S("G:c"): path("U:u>G:b>G:c"),
    }
    assert index.reachable(S("G:a")) == {
        S("G:a"): path("G:a"),
        S("G:b"): path("G:a>G:b"),
        S("G:c"): path("G:a>G:b>G:c"),
    }


def test_reachable_returns_a_copy():
    index = build(*NESTED)
    index.reachable(S("U:u")).clear()
    assert len(index.reachable(S("U:u"))) == 4


# ---------------------------------------------------------------------------- effective statements


def test_effective_statements_order_and_content():
    index = build(*DENY_LEVELS)
    assert index.effective_statements(S("U:alice")) == [
        EffectiveStatement("p-all", 0, "ALLOW", ("*",), ("*",), path("U:alice")),
        EffectiveStatement("z-deny", 0, "DENY", ("*",), ("secret/*",), path("U:alice>G:staff>G:everyone")),
    ]


def test_effective_statements_include_permissions_skip_disabled_missing_and_expired():
    index = build(
        {"p-mix": PERMISSIONS[0]["p-mix"], "p-off": P(A("*", "*"), enabled=False)},
        [
            ("U:m", "POLICY", "p-mix"),
            ("U:m", "POLICY", "p-off"),
            ("U:m", "POLICY", "ghost"),
            ("U:m", "GROUP", "g", "past"),
            ("G:g", "POLICY", "p-mix"),
        ],
    )
    got = index.effective_statements(S("U:m"))
    assert [(e.policy_id, e.statement_index, e.effect) for e in got] == [
        ("p-mix", 0, "ALLOW"),
        ("p-mix", 1, "DENY"),
        ("p-mix", 2, "ALLOW"),
        ("p-mix", 3, "ALLOW"),
    ]
    assert got[3].actions == ("inventory.Server.read",) and got[3].resources == ("*",)
    assert all(e.via == path("U:m") for e in got)


def test_effective_statements_each_policy_once_with_best_via():
    index = build(*CHAIN)
    got = index.effective_statements(S("U:both"))
    assert [(e.policy_id, e.via) for e in got] == [("p-b", path("U:both"))]
    got = index.effective_statements(S("U:short"))
    assert [(e.policy_id, e.via) for e in got] == [("p-z", path("U:short")), ("p-a", path("U:short>G:g"))]


def test_effective_statements_of_unknown_subject_is_empty():
    assert build(*CHAIN).effective_statements(S("U:ghost")) == []


# ---------------------------------------------------------------------------- list_authorized_resources

LAR = (
    {
        "p-inv": P(
            A(["inventory.server.read", "inventory.server.list"], ["srv/*", "db/main"]),
            A("inventory.*", "srv/prod/*"),
            D("inventory.server.list", "db/main"),
            perms=["identity.user.get"],
        ),
        "p-deny": P(D("*", "srv/secret/*")),
        "p-other": P(A("billing.*", "invoice/*")),
    },
    [("U:u", "POLICY", "p-inv"), ("U:u", "GROUP", "g"), ("G:g", "POLICY", "p-deny"), ("U:v", "POLICY", "p-other")],
)


SECRET = (AuthorizedException("srv/secret/*", ("*",)),)  # p-deny, through group g


def test_list_authorized_resources_everything():
    index = build(*LAR)
    assert index.list_authorized_resources(S("U:u")) == [
        AuthorizedResource("*", ("identity.user.get",), SECRET),
        AuthorizedResource("db/main", ("inventory.server.read",)),  # list is wholly denied there
        AuthorizedResource("srv/*", ("inventory.server.list", "inventory.server.read"), SECRET),
        AuthorizedResource("srv/prod/*", ("inventory.*",)),  # srv/secret/* does not meet it
    ]


def test_list_authorized_resources_prefix():
    index = build(*LAR)
    assert index.list_authorized_resources(S("U:u"), "srv/") == [
        AuthorizedResource("*", ("identity.user.get",), SECRET),  # `*` can match resources under srv/
        AuthorizedResource("srv/*", ("inventory.server.list", "inventory.server.read"), SECRET),
        AuthorizedResource("srv/prod/*", ("inventory.*",)),
    ]
    # Exceptions that cannot reach under the prefix are left out.
    assert index.list_authorized_resources(S("U:u"), "srv/prod/") == [
        AuthorizedResource("*", ("identity.user.get",)),
        AuthorizedResource("srv/*", ("inventory.server.list", "inventory.server.read")),
        AuthorizedResource("srv/prod/*", ("inventory.*",)),
    ]
    assert index.list_authorized_resources(S("U:u"), "db/") == [
        AuthorizedResource("*", ("identity.user.get",)),
        AuthorizedResource("db/main", ("inventory.server.read",)),
    ]
    assert index.list_authorized_resources(S("U:u"), "db/mainframe") == [
        AuthorizedResource("*", ("identity.user.get",))
    ]


def test_list_authorized_resources_action_filter():
    index = build(*LAR)
    assert index.list_authorized_resources(S("U:u"), "", "inventory.server.list") == [
        AuthorizedResource("srv/*", ("inventory.server.list",), SECRET),
        AuthorizedResource("srv/prod/*", ("inventory.*",)),
    ]
    assert index.list_authorized_resources(S("U:u"), "srv/", "INVENTORY.SERVER.READ") == [
        AuthorizedResource("srv/*", ("inventory.server.read",), SECRET),
        AuthorizedResource("srv/prod/*", ("inventory.*",)),
    ]
    assert index.list_authorized_resources(S("U:u"), "", "identity.user.get") == [
        AuthorizedResource("*", ("identity.user.get",), SECRET)
    ]
    assert index.list_authorized_resources(S("U:u"), "", "billing.pay") == []


def test_list_authorized_resources_deny_removal():
    # a deny covering the whole pattern removes it; a deny on part of it is an exception
    index = build(
        {"p": P(A("a.*", ["r/*", "s/*", "t/x"])), "d": P(D("a.*", "r/*"), D("*", "t/?"), D("a.b", "s/*"))},
        [("U:u", "POLICY", "p"), ("U:u", "POLICY", "d")],
    )
    assert index.list_authorized_resources(S("U:u")) == [
        AuthorizedResource("s/*", ("a.*",), (AuthorizedException("s/*", ("a.b",)),))
    ]
    for action, resource in [("a.b", "s/1"), ("a.c", "r/1"), ("a.c", "t/x")]:
        assert not index.check(S("U:u"), action, resource).allowed
    assert index.check(S("U:u"), "a.c", "s/1").allowed


def test_list_authorized_resources_carries_the_denies_as_exceptions():
    # permissions inventory.* plus DENY inventory.Server.delete on prod/*
    index = build({"p": P(D("inventory.Server.delete", "prod/*"), perms=["inventory.*"])}, [("U:alice", "POLICY", "p")])
    expected = [
        AuthorizedResource("*", ("inventory.*",), (AuthorizedException("prod/*", ("inventory.Server.delete",)),))
    ]
    assert index.list_authorized_resources(S("U:alice"), "", "inventory.Server.delete") == expected
    assert index.list_authorized_resources(S("U:alice")) == expected
    assert index.list_authorized_resources(S("U:alice"), "", "inventory.Server.read") == [
        AuthorizedResource("*", ("inventory.*",))
    ]
    assert not index.check(S("U:alice"), "inventory.Server.delete", "prod/web1").allowed
    assert index.check(S("U:alice"), "inventory.Server.delete", "dev/web1").allowed


def test_list_authorized_resources_action_filter_respects_denies_of_that_action():
    # allow a.* everywhere, deny a.b on s/*: asking for a.b must not list s/* (nor *)
    index = build(
        {"p": P(A("a.*", ["s/*", "u/*"])), "d": P(D("a.b", "s/*"))}, [("U:u", "POLICY", "p"), ("U:u", "POLICY", "d")]
    )
    assert index.list_authorized_resources(S("U:u"), "", "a.b") == [AuthorizedResource("u/*", ("a.*",))]
    assert index.list_authorized_resources(S("U:u"), "", "a.c") == [
        AuthorizedResource("s/*", ("a.*",)),
        AuthorizedResource("u/*", ("a.*",)),
    ]
    assert index.list_authorized_resources(S("U:u")) == [
        AuthorizedResource("s/*", ("a.*",), (AuthorizedException("s/*", ("a.b",)),)),
        AuthorizedResource("u/*", ("a.*",)),
    ]


def test_list_authorized_resources_through_groups_and_nothing():
    index = build(*NESTED)
    assert index.list_authorized_resources(S("U:u"), "doc/") == [AuthorizedResource("doc/*", ("docs.*",))]
    assert index.list_authorized_resources(S("U:u"), "img/") == []
    assert index.list_authorized_resources(S("U:nobody")) == []
    assert build(*DISABLED).list_authorized_resources(S("U:u")) == []


def test_list_authorized_resources_deduplicates_actions():
    index = build(
        {"p": P(A(["a.x", "a.x"], "r"), A("a.x", ["r", "r"])), "q": P(A("a.x", "r"))},
        [("U:u", "POLICY", "p"), ("U:u", "POLICY", "q")],
    )
    assert index.list_authorized_resources(S("U:u")) == [AuthorizedResource("r", ("a.x",))]


# ---------------------------------------------------------------------------- subjects_holding


def test_subjects_holding_direct_and_through_membership():
    index = build(*NESTED)
    assert index.subjects_holding("p-top") == [
        SubjectGrant(S("G:l1"), path("G:l1>G:l2>G:l3")),
        SubjectGrant(S("G:l2"), path("G:l2>G:l3")),
        SubjectGrant(S("G:l3"), path("G:l3")),
        SubjectGrant(S("U:u"), path("U:u>G:l1>G:l2>G:l3")),
    ]


def test_subjects_holding_roles_service_accounts_and_cycles():
    assert build(*ROLE).subjects_holding("p-admin") == [
        SubjectGrant(S("R:admin"), path("R:admin")),
        SubjectGrant(S("SA:ci"), path("SA:ci>R:admin")),
        SubjectGrant(S("U:alice"), path("U:alice>R:admin")),
    ]
    assert build(*CYCLE).subjects_holding("p-a") == [
        SubjectGrant(S("G:a"), path("G:a")),
        SubjectGrant(S("G:b"), path("G:b>G:a")),
        SubjectGrant(S("U:u"), path("U:u>G:a")),
    ]


def test_subjects_holding_best_via_and_edge_cases():
    index = build(*CHAIN)
    holders = {g.subject: g.via for g in index.subjects_holding("p-b")}
    assert holders[S("U:both")] == path("U:both")
    assert holders[S("U:twin")] == path("U:twin>G:g1")
    assert holders[S("U:gr")] == path("U:gr>G:h")
    assert index.subjects_holding("nope") == []
    # assignments count even when the policy is disabled or missing; expired ones do not
    assert [g.subject for g in build(*DISABLED).subjects_holding("p-off")] == [S("G:g"), S("U:u"), S("U:w")]
    assert [g.subject for g in build(*MISSING).subjects_holding("p-ghost")] == [S("U:u"), S("U:v")]
    assert [g.subject for g in build(*EXPIRY).subjects_holding("p")] == [S("G:g"), S("U:d"), S("U:future"), S("U:stay")]


# ---------------------------------------------------------------------------- who_can


def test_who_can():
    index = build(*DENY_LEVELS)
    assert index.who_can("docs.read", "public/1") == [
        SubjectDecision(S("U:alice"), Decision(True, OK, "p-all", 0, path("U:alice")))
    ]
    assert index.who_can("docs.read", "secret/1") == []
    assert index.who_can("vault.open", "vault/1") == [
        SubjectDecision(S("G:vaulters"), Decision(True, OK, "g-allow", 0, path("G:vaulters"))),
        SubjectDecision(S("U:alice"), Decision(True, OK, "p-all", 0, path("U:alice"))),
        SubjectDecision(S("U:bob"), Decision(True, OK, "g-allow", 0, path("U:bob>G:vaulters"))),
    ]
    assert [d.subject for d in index.who_can("vault.destroy", "vault/1")] == [S("G:vaulters"), S("U:alice")]


def test_who_can_through_membership_and_case():
    index = build(*NESTED)
    assert [d.subject for d in index.who_can("DOCS.read", "doc/1")] == [S("G:l1"), S("G:l2"), S("G:l3"), S("U:u")]
    assert index.who_can("docs.read", "DOC/1") == []
    assert [d.subject for d in build(*CYCLE).who_can("wiki.delete", "page/locked")] == [S("G:c"), S("U:v")]
    assert build(*DISABLED).who_can("x", "y") == [SubjectDecision(S("U:v"), Decision(True, OK, "p-on", 0, path("U:v")))]
    assert [d.subject for d in build(*EXPIRY).who_can("a", "b")] == [S("G:g"), S("U:d"), S("U:future"), S("U:stay")]


def test_who_can_matches_check_over_known_subjects():
    for policies, edges in [
        DIRECT,
        ROLE,
        GROUP,
        NESTED,
        ROLE_IN_GROUP,
        CYCLE,
        DENY_SAME_LEVEL,
        DENY_LEVELS,
        PERMISSIONS,
        DISABLED,
        EXPIRY,
        MISSING,
        QMARK,
        NOTHING,
        CHAIN,
        MULTI,
        BUCKETS,
        SPECIAL,
    ]:
        index = build(policies, edges)
        for action, resource in [
            ("a", "b"),
            ("x.y", "t"),
            ("wiki.read", "page/1"),
            ("s3.get", "bucket/prod/x"),
            ("docs.read", "secret/1"),
            ("identity.x", "r"),
            ("k.v", "w"),
        ]:
            expected = [
                SubjectDecision(s, d) for s in index.subjects if (d := index.check(s, action, resource)).allowed
            ]
            assert index.who_can(action, resource) == expected


def test_known_subjects():
    assert build(*ROLE_IN_GROUP).subjects == (S("G:eng"), S("R:ops"), S("U:x"))


# ---------------------------------------------------------------------------- threads


def test_concurrent_checks_agree():
    policies = {f"p{i}": P(A(f"svc{i % 7}.*", f"res/{i % 5}/*"), D(f"svc{i % 7}.delete", "res/0/*")) for i in range(60)}
    edges = [(f"U:u{i}", "GROUP", f"g{i % 6}") for i in range(40)]
    edges += [(f"G:g{j}", "POLICY", f"p{k}") for j in range(6) for k in range(j, 60, 6)]
    edges += [(f"G:g{j}", "GROUP", f"g{(j + 1) % 6}") for j in range(6)]
    questions = [
        (S(f"U:u{i}"), f"svc{i % 7}.{verb}", f"res/{i % 5}/x") for i in range(40) for verb in ("read", "delete")
    ]
    expected = build(policies, edges).batch_check(questions)
    index = build(policies, edges)  # cold: threads race to fill the memo caches
    results: list = []
    errors: list = []

    def worker():
        try:
            results.append(index.batch_check(questions))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected for r in results) and len(results) == 8
