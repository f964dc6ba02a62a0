"""The policy evaluation engine: policies + assignment graph in, decisions out.

Pure: no I/O, no database, no gRPC. A :class:`DomainIndex` is built from one domain's
policies and assignment edges at a given ``now`` and answers every
authorization question (check, list, who-can, effective permissions) from memory.

Semantics
---------
- **Membership.** An edge (S, ROLE, r) makes S a member of ``Subject("ROLE", r)``;
  (S, GROUP, g) a member of ``Subject("GROUP", g)``. A subject holds the policies of its
  POLICY edges and, transitively, those of every role/group it reaches (groups in
  groups, roles in groups, ...). Cycles are harmless.
- **Applicability.** Disabled policies, policies absent from the index and expired
  edges (``expires_at <= now``) grant nothing. A statement applies to (action,
  resource) when one of its action patterns matches the action and one of its resource
  patterns matches the resource (see :mod:`policyhub.engine.patterns`: ``*`` any run,
  crossing ``.``/``:``/``/``; ``?`` one character; actions case-insensitive, resources
  case-sensitive; the empty pattern matches nothing).
- **Decision.** Default deny (``NO_MATCHING_ALLOW``). Any applicable DENY wins over every
  ALLOW (``EXPLICIT_DENY``); otherwise any applicable ALLOW allows (``ALLOWED``).
- **Deciding chain.** Among the applicable statements of the winning effect, the one
  with the shortest ``via`` path wins, then the smallest policy id, then the smallest
  statement index. ``via`` runs from the asked subject to the subject holding the
  policy. When a subject reaches a role/group by several shortest paths, the
  lexicographically smallest path (subjects ordered by (type, id)) is reported; when it
  holds a policy through several subjects, the best of those paths by (length,
  lexicographic order). Each policy therefore has exactly one ``via`` per asked subject.
- **Time.** Edges already expired at construction are dropped. The index does not
  watch the clock: the caller must rebuild it once ``now`` reaches
  :attr:`DomainIndex.next_expiry` (the earliest future expiry, ``None`` if none).
- **list_authorized_resources.** Entries are the resource patterns R of the subject's
  applicable ALLOW statements that can match some resource starting with the prefix
  (``*`` and ``*/x`` can; ``b/*`` cannot for prefix ``a/``), each with the action patterns A
  of those statements (with an ``action`` filter: only the A that match it), and with
  *exceptions*: the resource patterns of the subject's applicable DENY statements that may
  overlap R, each with that deny's action patterns that may overlap one of the entry's A (with
  an ``action`` filter: that match it). An A that one deny statement takes entirely on R (its
  action pattern contains A, or the filtered action, and its resource pattern contains R) is
  left out, and an entry left with no A is not reported. The answer is exact: a concrete
  (action, resource) under the prefix is allowed by ``check`` if and only if some entry's R
  matches the resource and one of its A the action, and none of that entry's exceptions
  matches both (an exception only ever names what a deny statement really denies, so it can
  remove nothing ``check`` allows; and every deny that could remove a pair is listed).
- **subjects_holding(policy_id)** reports assignments, whether or not the policy is
  enabled or known; **who_can** and **effective_statements** only count policies that
  apply (enabled and present).

Performance
-----------
Everything is built lazily and memoized:

- per *holder* (a subject with POLICY edges): its directly held, applying statements,
  compiled and split by effect, then bucketed by action pattern — literal patterns by
  the whole lower-cased action, patterns with a ``.`` before their first wildcard by
  their first segment, the rest in a catch-all list; each bucket sorted by (policy id,
  statement index). Shared by every subject that reaches the holder, so memory stays
  proportional to the statements, not to subjects x statements.
- per asked subject: the reachable set (BFS over membership edges in sorted order) and
  a *view*: the layers (holder view, via path) of the holders it reaches, in BFS order,
  and a cache of the Decisions it has returned.

A warm ``check`` therefore looks, per effect and per reached holder, at three short
lists (exact action, first segment, catch-all) and stops at the first match; deeper
layers are skipped once a shallower one matched. Compiled patterns are cached per
distinct pattern, compiled statements per distinct statement.

**Deltas.** :meth:`DomainIndex.with_changes` derives the index of the same domain after a
few policies and edges changed, in O(delta + what it touches): the graph and the policies live
in :class:`~policyhub.engine.overlay.Overlay` maps shared with the old index, and a memo of the
old index is taken over on first use when nothing it was computed from changed (a subject's
closure when no subject its BFS visited changed edges; its view when, also, none of the
policies it reaches changed; a holder's statements likewise; a member listing when none of the
roles/groups it visited changed members).

The index is immutable after construction except for its memo dictionaries, which
only gain entries (single-key inserts, atomic under the GIL) whose values are never
mutated afterwards: it is safe to share between threads. Two threads may compute the
same memo value concurrently; both results are equal and either may be kept.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, Iterable, Mapping

from policyhub.domain import as_utc
from policyhub.engine.conditions import Unknown
from policyhub.engine.coverage import Budget, BudgetExceeded, PatternIndex, contains, overlaps
from policyhub.engine.model import (
    ALLOWED,
    EXPLICIT_DENY,
    GRANT_TYPES,
    MISSING_CONTEXT,
    NO_MATCHING_ALLOW,
    AuthorizedException,
    AuthorizedResource,
    Decision,
    Edge,
    EffectiveStatement,
    PolicyRules,
    Statement,
    Subject,
    SubjectDecision,
    SubjectGrant,
)
from policyhub.engine.overlay import Overlay
from policyhub.engine.patterns import (
    Matcher,
    action_bucket,
    action_segment,
    compile_pattern,
    has_wildcard,
    is_match_all,
    match_action,
    may_match_with_prefix,
)

__all__ = ["DomainIndex"]

NO_ALLOW_DECISION = Decision(False, NO_MATCHING_ALLOW)
# Pattern-algebra steps one list_authorized_resources may spend (then it answers conservatively).
LISTING_STEPS = 1_000_000

# An entry of a bucket: ((policy id, statement index), action matcher or None = any,
# resource matcher or None = any). Buckets are sorted by that key.
_Key = tuple[str, int]
_Entry = tuple[_Key, "Matcher | None", "Matcher | None"]


def _any_of(matchers: list[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    ms = tuple(matchers)

    def match(value: str) -> bool:
        for m in ms:
            if m(value):
                return True
        return False

    return match


class _CompiledStatement:
    """One statement, compiled for indexing (immutable, shared through a cache)."""

    __slots__ = ("effect", "exact", "segments", "catch", "has_catch", "resource")

    def __init__(
        self,
        effect: str,
        exact: tuple[str, ...],
        segments: tuple[tuple[str, Matcher], ...],
        catch: Matcher | None,
        has_catch: bool,
        resource: Matcher | None,
    ):
        self.effect = effect
        self.exact = exact  # lower-cased literal action patterns
        self.segments = segments  # (first segment, combined matcher of the patterns in it)
        self.catch = catch  # combined matcher of the catch-all patterns, None = matches anything
        self.has_catch = has_catch
        self.resource = resource  # combined resource matcher, None = matches anything


@lru_cache(maxsize=262_144)
def _compile_statement(statement: Statement) -> _CompiledStatement | None:
    """None for a statement that can never apply (no non-empty action or resource pattern)."""
    resource_patterns = [r for r in dict.fromkeys(statement.resources) if r]
    action_patterns = [a for a in dict.fromkeys(a.lower() for a in statement.actions) if a]
    if not resource_patterns or not action_patterns:
        return None
    if any(is_match_all(r) for r in resource_patterns):
        resource = None
    else:
        resource = _any_of([compile_pattern(r) for r in resource_patterns])
    exact: list[str] = []
    segments: dict[str, list[str]] = {}
    catch: list[str] = []
    for a in action_patterns:
        bucket = action_bucket(a)
        if bucket is None:
            catch.append(a)
        elif bucket[0] == "exact":
            exact.append(a)
        else:
            segments.setdefault(bucket[1], []).append(a)
    if not catch or any(is_match_all(a) for a in catch):
        catch_matcher = None
    else:
        catch_matcher = _any_of([compile_pattern(a) for a in catch])
    return _CompiledStatement(
        statement.effect,
        tuple(exact),
        tuple((seg, _any_of([compile_pattern(a) for a in pats])) for seg, pats in segments.items()),
        catch_matcher,
        bool(catch),
        resource,
    )


class _EffectView:
    """Statements of one effect, bucketed by action pattern, each bucket sorted by key."""

    __slots__ = ("exact", "segments", "catch")

    def __init__(
        self, exact: dict[str, tuple[_Entry, ...]], segments: dict[str, tuple[_Entry, ...]], catch: tuple[_Entry, ...]
    ):
        self.exact = exact
        self.segments = segments
        self.catch = catch

    @classmethod
    def build(cls, entries: Iterable[tuple[_Key, _CompiledStatement]]) -> "_EffectView | None":
        """From (key, statement) pairs given in ascending key order."""
        exact: dict[str, list[_Entry]] = {}
        segments: dict[str, list[_Entry]] = {}
        catch: list[_Entry] = []
        for key, cs in entries:
            rm = cs.resource
            for action in cs.exact:
                exact.setdefault(action, []).append((key, None, rm))
            for segment, matcher in cs.segments:
                segments.setdefault(segment, []).append((key, matcher, rm))
            if cs.has_catch:
                catch.append((key, cs.catch, rm))
        if not (exact or segments or catch):
            return None
        return cls({k: tuple(v) for k, v in exact.items()}, {k: tuple(v) for k, v in segments.items()}, tuple(catch))

    def first(self, action: str, segment: str, resource: str) -> _Key | None:
        """Key of the best (smallest key) applicable entry, or None. ``action`` is lower-cased."""
        best = None
        entries = self.exact.get(action)
        if entries:
            for key, _am, rm in entries:
                if rm is None or rm(resource):
                    best = key
                    break
        entries = self.segments.get(segment)
        if entries:
            for key, am, rm in entries:
                if best is not None and key >= best:
                    break
                if am is not None and am(action) and (rm is None or rm(resource)):
                    best = key
                    break
        entries = self.catch
        if entries:
            for key, am, rm in entries:
                if best is not None and key >= best:
                    break
                if (am is None or am(action)) and (rm is None or rm(resource)):
                    best = key
                    break
        return best

    def all_keys(self, action: str, segment: str, resource: str) -> Iterable[_Key]:
        """Keys of every applicable entry (with repeats). ``action`` is lower-cased."""
        for entries in (self.exact.get(action, ()), self.segments.get(segment, ()), self.catch):
            for key, am, rm in entries:
                if (am is None or am(action)) and (rm is None or rm(resource)):
                    yield key


class _HolderView:
    """The statements of the policies a subject holds DIRECTLY, by effect, those with
    conditions apart (shared by every subject that reaches this holder)."""

    __slots__ = ("deny", "allow", "conditional_deny", "conditional_allow")

    def __init__(
        self,
        deny: _EffectView | None,
        allow: _EffectView | None,
        conditional_deny: _EffectView | None = None,
        conditional_allow: _EffectView | None = None,
    ):
        self.deny = deny
        self.allow = allow
        self.conditional_deny = conditional_deny
        self.conditional_allow = conditional_allow


class _View:
    """What one subject holds: one layer per reached holder with applying statements,
    in BFS order (path length, then lexicographic path), plus a Decision cache."""

    __slots__ = (
        "deny_layers",
        "allow_layers",
        "conditional_deny_layers",
        "conditional_allow_layers",
        "held",
        "decisions",
    )

    def __init__(
        self,
        layers: list[tuple[int, _HolderView, tuple[Subject, ...]]],
        held: tuple[tuple[str, tuple[Subject, ...]], ...],
    ):
        self.deny_layers = tuple((depth, hv.deny, via) for depth, hv, via in layers if hv.deny is not None)
        self.allow_layers = tuple((depth, hv.allow, via) for depth, hv, via in layers if hv.allow is not None)
        self.conditional_deny_layers = tuple(
            (depth, hv.conditional_deny, via) for depth, hv, via in layers if hv.conditional_deny is not None
        )
        self.conditional_allow_layers = tuple(
            (depth, hv.conditional_allow, via) for depth, hv, via in layers if hv.conditional_allow is not None
        )
        self.held = held  # (policy_id, via) of applying policies, sorted by (len(via), policy_id)
        self.decisions: dict[tuple[bool, _Key, tuple[Subject, ...]], Decision] = {}

    def decision(self, allowed: bool, key: _Key, via: tuple[Subject, ...]) -> Decision:
        cache_key = (allowed, key, via)
        decision = self.decisions.get(cache_key)
        if decision is None:
            decision = Decision(allowed, ALLOWED if allowed else EXPLICIT_DENY, key[0], key[1], via)
            self.decisions[cache_key] = decision
        return decision


_EMPTY_VIEW = _View([], ())


_Layer = tuple[int, _EffectView, tuple[Subject, ...]]


def _search(
    layers: tuple[_Layer, ...], action: str, segment: str, resource: str
) -> tuple[_Key | None, tuple[Subject, ...]]:
    """Best (key, via) over layers sorted by (depth, via): the shallowest depth with a
    match, then the smallest key, then the first layer (smallest via)."""
    if len(layers) == 1:
        return layers[0][1].first(action, segment, resource), layers[0][2]
    best = None
    best_depth = 0
    best_via: tuple[Subject, ...] = ()
    for depth, effect_view, via in layers:
        if best is not None and depth > best_depth:
            break
        key = effect_view.first(action, segment, resource)
        if key is not None and (best is None or key < best):
            best, best_depth, best_via = key, depth, via
    return best, best_via


# (depth, key, via): how statements of one effect rank for the deciding chain.
_Ranked = tuple[int, _Key, tuple[Subject, ...]]


def _may_apply(layers: tuple[_Layer, ...], action: str, segment: str) -> bool:
    """Whether a statement of these layers may match the action: a bucket lookup, no matching."""
    return any(
        effect_view.catch or action in effect_view.exact or segment in effect_view.segments
        for _depth, effect_view, _via in layers
    )


def _conditional(first: _Ranked, missing: set[str]) -> Decision:
    return Decision(False, MISSING_CONTEXT, first[1][0], first[1][1], first[2], tuple(sorted(missing)))


def _target(edge: Edge) -> Subject | None:
    """The role/group an edge makes its subject a member of (None for a POLICY edge)."""
    if edge.grant_type not in GRANT_TYPES:
        raise ValueError(f"unknown grant type {edge.grant_type!r}")
    return Subject(edge.grant_type, edge.grant_id) if edge.grant_type != "POLICY" else None


class _Closure:
    __slots__ = ("reach", "held")

    def __init__(self, reach: dict[Subject, tuple[Subject, ...]], held: dict[str, tuple[Subject, ...]]):
        self.reach = reach  # reached subject -> shortest (lexicographically smallest) path, BFS order
        self.held = held  # policy id -> best via, for every POLICY edge reached (policy known or not)


class _Algebra:
    """Memoized pattern containment/overlap for one listing, under one work budget. Once the
    budget is spent the answers turn conservative in the direction that keeps a listing
    exact: "may overlap" (an exception that overlaps nothing removes nothing) and "not
    contained" (the entry stays, with the deny as an exception)."""

    __slots__ = ("budget", "memo")

    def __init__(self, budget: Budget):
        self.budget = budget
        self.memo: dict[tuple[bool, str, str], bool] = {}

    def overlaps(self, a: str, b: str) -> bool:
        key = (True, a, b)
        found = self.memo.get(key)
        if found is None:
            try:
                found = overlaps(a, b, self.budget)
            except BudgetExceeded:
                found = True
            self.memo[key] = found
        return found

    def contains(self, outer: str, inner: str) -> bool:
        key = (False, outer, inner)
        found = self.memo.get(key)
        if found is None:
            try:
                found = contains(outer, inner, self.budget)
            except BudgetExceeded:
                found = False
            self.memo[key] = found
        return found


class _Inherited:
    """The memos of the index a new one was derived from (with_changes), and what the delta
    changed: a memo entry is taken over when nothing it was computed from changed. Holds the old
    index's memo dictionaries, not the old index, so a chain of derived indexes keeps at most
    one older generation alive."""

    __slots__ = (
        "closures",
        "holder_views",
        "views",
        "held",
        "explicit",
        "member_lists",
        "nodes",
        "targets",
        "policies",
    )

    def __init__(self, old: DomainIndex, nodes: set[Subject], targets: set[Subject], policies: set[str]):
        self.closures = old._closures
        self.holder_views = old._holder_views
        self.views = old._views
        self.held = old._held
        self.explicit = old._explicit
        self.member_lists = old._member_lists
        self.nodes = nodes  # subjects whose POLICY or membership edges changed
        self.targets = targets  # roles/groups whose members changed
        self.policies = policies  # policies added, changed or removed

    def closure(self, subject: Subject) -> _Closure | None:
        """The old closure when its BFS visited no subject whose edges changed."""
        closure = self.closures.get(subject)
        if closure is None or not self.nodes.isdisjoint(closure.reach):
            return None
        return closure

    def view_valid(self, closure: _Closure) -> bool:
        """A view (and what derives from it) also reads the policies its subject holds."""
        return self.policies.isdisjoint(closure.held)


class DomainIndex:
    """Compiled, read-only evaluation index of one domain at one instant (see module doc)."""

    def __init__(self, policies: Iterable[PolicyRules], edges: Iterable[Edge], now: datetime):
        self.now = now = as_utc(now)
        by_id: dict[str, PolicyRules] = {}
        for policy in policies:
            if policy.policy_id in by_id:
                raise ValueError(f"duplicate policy id {policy.policy_id!r}")
            by_id[policy.policy_id] = policy

        grants: dict[Subject, set[str]] = {}
        member_of: dict[Subject, set[Subject]] = {}
        next_expiry: datetime | None = None
        for edge in edges:
            target = _target(edge)
            if edge.expires_at is not None:
                expires_at = as_utc(edge.expires_at)
                if expires_at <= now:
                    continue
                if next_expiry is None or expires_at < next_expiry:
                    next_expiry = expires_at
            if target is None:
                grants.setdefault(edge.subject, set()).add(edge.grant_id)
            else:
                member_of.setdefault(edge.subject, set()).add(target)

        members: dict[Subject, set[Subject]] = {}
        for s, targets in member_of.items():
            for t in targets:
                members.setdefault(t, set()).add(s)
        holders: dict[str, set[Subject]] = {}
        for s, pids in grants.items():
            for pid in pids:
                holders.setdefault(pid, set()).add(s)
        self._next_expiry = next_expiry
        # Overlays, so that with_changes derives a new index without copying these whole.
        self._policies: Overlay[str, PolicyRules] = Overlay(by_id)
        self._grants: Overlay[Subject, tuple[str, ...]] = Overlay({s: tuple(sorted(p)) for s, p in grants.items()})
        self._member_of: Overlay[Subject, tuple[Subject, ...]] = Overlay(
            {s: tuple(sorted(t)) for s, t in member_of.items()}
        )
        self._members: Overlay[Subject, tuple[Subject, ...]] = Overlay(
            {t: tuple(sorted(m)) for t, m in members.items()}
        )
        self._holders: Overlay[str, tuple[Subject, ...]] = Overlay({p: tuple(sorted(h)) for p, h in holders.items()})
        self._inherited: _Inherited | None = None
        self._init_memos()

    def _init_memos(self) -> None:
        # memo caches (whole values only; see module doc)
        self._closures: dict[Subject, _Closure] = {}
        self._holder_views: dict[Subject, _HolderView | None] = {}
        self._views: dict[Subject, _View] = {}
        self._allow_index: _EffectView | None = None
        self._allow_index_built = False
        self._held: dict[Subject, tuple[Statement, ...]] = {}
        self._explicit: dict[Subject, dict[str, tuple[str, ...]]] = {}
        self._member_lists: dict[tuple[Subject, bool, str | None], tuple[tuple[Subject, tuple[Subject, ...]], ...]] = {}
        self._known: tuple[Subject, ...] | None = None

    # ------------------------------------------------------------------ deltas

    def with_changes(
        self,
        policies: Iterable[PolicyRules] = (),
        removed_policies: Iterable[str] = (),
        edges_added: Iterable[Edge] = (),
        edges_removed: Iterable[Edge] = (),
        now: datetime | None = None,
    ) -> DomainIndex:
        """A new index equal to one built from this one's policies and edges with the given ones
        upserted (a policy by id, an edge by (subject, grant type, grant id): its expiry
        replaced) and removed (``expires_at`` of a removed edge is ignored; removals apply
        before additions, so an edge in both is kept). This index is left unchanged, so readers
        holding it keep a consistent view.

        Costs O(delta + the edges of the subjects, roles/groups and policies it touches), not
        O(domain). The new index takes over every memo of this one that the delta cannot have
        changed (checked lazily, on first use). ``now`` (default: this index's) must be before
        :attr:`next_expiry`: edges that expired since this index was built are not tracked, so a
        new index is built then instead. The new :attr:`next_expiry` may be earlier than a fresh
        build's (an edge removed by the delta may have been the next to expire): never later."""
        now = self.now if now is None else as_utc(now)
        if self._next_expiry is not None and now >= self._next_expiry:
            raise ValueError("an edge of this index has expired since it was built: build a new index")
        policy_changes: dict[str, PolicyRules | None] = {pid: None for pid in removed_policies if pid in self._policies}
        for policy in policies:
            if self._policies.get(policy.policy_id) != policy:
                policy_changes[policy.policy_id] = policy
            else:
                policy_changes.pop(policy.policy_id, None)

        # per subject: (grant type, grant id) pairs removed, then added
        removed: dict[Subject, set[tuple[str, str]]] = {}
        added: dict[Subject, set[tuple[str, str]]] = {}
        for edge in edges_removed:
            _target(edge)
            removed.setdefault(edge.subject, set()).add((edge.grant_type, edge.grant_id))
        next_expiry = self._next_expiry
        for edge in edges_added:
            _target(edge)
            pair = (edge.grant_type, edge.grant_id)
            if edge.expires_at is not None:
                expires_at = as_utc(edge.expires_at)
                if expires_at <= now:
                    removed.setdefault(edge.subject, set()).add(pair)
                    added.get(edge.subject, set()).discard(pair)
                    continue
                if next_expiry is None or expires_at < next_expiry:
                    next_expiry = expires_at
            removed.get(edge.subject, set()).discard(pair)
            added.setdefault(edge.subject, set()).add(pair)

        grants_changes: dict[Subject, tuple[str, ...] | None] = {}
        member_of_changes: dict[Subject, tuple[Subject, ...] | None] = {}
        holder_delta: dict[str, tuple[set[Subject], set[Subject]]] = {}  # pid -> (lost, gained)
        member_delta: dict[Subject, tuple[set[Subject], set[Subject]]] = {}  # target -> (lost, gained)
        for subject in removed.keys() | added.keys():
            gone = removed.get(subject, set())
            new = added.get(subject, set())
            old_pids = set(self._grants.get(subject, ()))
            pids = (old_pids - {gid for gt, gid in gone if gt == "POLICY"}) | {gid for gt, gid in new if gt == "POLICY"}
            if pids != old_pids:
                grants_changes[subject] = tuple(sorted(pids)) or None
                for pid in old_pids - pids:
                    holder_delta.setdefault(pid, (set(), set()))[0].add(subject)
                for pid in pids - old_pids:
                    holder_delta.setdefault(pid, (set(), set()))[1].add(subject)
            old_targets = set(self._member_of.get(subject, ()))
            targets = (old_targets - {Subject(gt, gid) for gt, gid in gone if gt != "POLICY"}) | {
                Subject(gt, gid) for gt, gid in new if gt != "POLICY"
            }
            if targets != old_targets:
                member_of_changes[subject] = tuple(sorted(targets)) or None
                for target in old_targets - targets:
                    member_delta.setdefault(target, (set(), set()))[0].add(subject)
                for target in targets - old_targets:
                    member_delta.setdefault(target, (set(), set()))[1].add(subject)
        holders_changes = {
            pid: tuple(sorted((set(self._holders.get(pid, ())) - lost) | gained)) or None
            for pid, (lost, gained) in holder_delta.items()
        }
        members_changes = {
            target: tuple(sorted((set(self._members.get(target, ())) - lost) | gained)) or None
            for target, (lost, gained) in member_delta.items()
        }

        out: DomainIndex = DomainIndex.__new__(DomainIndex)
        out.now = now
        out._next_expiry = next_expiry
        out._policies = self._policies.changed(policy_changes) if policy_changes else self._policies
        out._grants = self._grants.changed(grants_changes) if grants_changes else self._grants
        out._member_of = self._member_of.changed(member_of_changes) if member_of_changes else self._member_of
        out._members = self._members.changed(members_changes) if members_changes else self._members
        out._holders = self._holders.changed(holders_changes) if holders_changes else self._holders
        out._init_memos()
        out._inherited = _Inherited(
            self, grants_changes.keys() | member_of_changes.keys(), set(members_changes), set(policy_changes)
        )
        if not policy_changes and not holders_changes:
            # The allow index reads only the held policies and their holders' set of ids.
            out._allow_index, out._allow_index_built = self._allow_index, self._allow_index_built
        if not (grants_changes or member_of_changes):
            out._known = self._known
        return out

    def edges_naming(self, subjects: Iterable[Subject] = (), policy_ids: Iterable[str] = ()) -> list[Edge]:
        """The index's (unexpired) edges held by or granting one of ``subjects`` and granting one
        of ``policy_ids``, without their expiry: what to remove before reloading everything that
        names them (a renamed role, group or policy)."""
        out: set[Edge] = set()
        for subject in subjects:
            out.update(Edge(subject, "POLICY", pid) for pid in self._grants.get(subject, ()))
            out.update(Edge(subject, t.type, t.id) for t in self._member_of.get(subject, ()))
            out.update(Edge(m, subject.type, subject.id) for m in self._members.get(subject, ()))
        for pid in policy_ids:
            out.update(Edge(h, "POLICY", pid) for h in self._holders.get(pid, ()))
        return sorted(out, key=lambda e: (e.subject, e.grant_type, e.grant_id))

    # ------------------------------------------------------------------ properties

    @property
    def next_expiry(self) -> datetime | None:
        """Earliest expiry still in the future at construction; rebuild the index then."""
        return self._next_expiry

    @property
    def subjects(self) -> tuple[Subject, ...]:
        """Every subject of the graph (holder of an unexpired edge, or its ROLE/GROUP target),
        sorted."""
        known = self._known
        if known is None:
            known = self._known = tuple(sorted({*self._grants, *self._member_of, *self._members}))
        return known

    # ------------------------------------------------------------------ memoized building blocks

    def _closure(self, subject: Subject) -> _Closure:
        closure = self._closures.get(subject)
        if closure is not None:
            return closure
        if self._inherited is not None:
            closure = self._inherited.closure(subject)
            if closure is not None:
                self._closures[subject] = closure
                return closure
        if subject not in self._grants and subject not in self._member_of:
            return _Closure({subject: (subject,)}, {})  # nothing to reach: not memoized
        reach: dict[Subject, tuple[Subject, ...]] = {subject: (subject,)}
        held: dict[str, tuple[Subject, ...]] = {}
        order = [subject]
        i = 0
        grants, member_of = self._grants, self._member_of
        while i < len(order):
            node = order[i]
            i += 1
            path = reach[node]
            for pid in grants.get(node, ()):
                if pid not in held:
                    held[pid] = path
            for nxt in member_of.get(node, ()):
                if nxt not in reach:
                    reach[nxt] = path + (nxt,)
                    order.append(nxt)
        closure = _Closure(reach, held)
        self._closures[subject] = closure
        return closure

    def _applying(self, policy_id: str) -> PolicyRules | None:
        policy = self._policies.get(policy_id)
        return policy if policy is not None and policy.enabled else None

    def _holder_view(self, holder: Subject) -> _HolderView | None:
        if holder in self._holder_views:
            return self._holder_views[holder]
        inherited = self._inherited
        if (
            inherited is not None
            and holder in inherited.holder_views
            and holder not in inherited.nodes
            and inherited.policies.isdisjoint(self._grants.get(holder, ()))
        ):
            view = self._holder_views[holder] = inherited.holder_views[holder]
            return view
        # by (conditional, effect): (key, compiled statement), keys ascending
        parts: dict[tuple[bool, str], list[tuple[_Key, _CompiledStatement]]] = {
            (conditional, effect): [] for conditional in (False, True) for effect in ("DENY", "ALLOW")
        }
        for pid in self._grants.get(holder, ()):  # sorted, so keys ascend
            policy = self._applying(pid)
            if policy is None:
                continue
            for idx, statement in enumerate(policy.statements):
                cs = _compile_statement(statement)
                if cs is not None:
                    parts[(statement.condition is not None, cs.effect)].append(((pid, idx), cs))
        view = None
        if any(parts.values()):
            view = _HolderView(
                _EffectView.build(parts[(False, "DENY")]),
                _EffectView.build(parts[(False, "ALLOW")]),
                _EffectView.build(parts[(True, "DENY")]),
                _EffectView.build(parts[(True, "ALLOW")]),
            )
        self._holder_views[holder] = view
        return view

    def _view(self, subject: Subject) -> _View:
        view = self._views.get(subject)
        if view is not None:
            return view
        closure = self._closure(subject)
        if not closure.held:
            return _EMPTY_VIEW
        inherited = self._inherited
        if inherited is not None and inherited.closures.get(subject) is closure and inherited.view_valid(closure):
            # Taken over whole, with what derives from it alone.
            view = inherited.views.get(subject)
            if view is not None:
                statements = inherited.held.get(subject)
                if statements is not None:
                    self._held[subject] = statements
                explicit = inherited.explicit.get(subject)
                if explicit is not None:
                    self._explicit[subject] = explicit
                self._views[subject] = view
                return view
        layers = []
        for node, path in closure.reach.items():  # BFS order: (len(path), path)
            if node in self._grants:
                hv = self._holder_view(node)
                if hv is not None:
                    layers.append((len(path), hv, path))
        held = tuple(
            sorted(
                ((pid, via) for pid, via in closure.held.items() if self._applying(pid) is not None),
                key=lambda item: (len(item[1]), item[0]),
            )
        )
        view = _View(layers, held)
        self._views[subject] = view
        return view

    # ------------------------------------------------------------------ questions

    def check(self, subject: Subject, action: str, resource: str, context: Mapping[str, Any] | None = None) -> Decision:
        """The decision; ``context`` (flat, dotted keys: see conditions.flatten_context) is what
        conditional statements are evaluated against."""
        view = self._views.get(subject) or self._view(subject)
        action = action.lower()
        dot = action.find(".")
        segment = action if dot < 0 else action[:dot]
        if _may_apply(view.conditional_deny_layers, action, segment) or _may_apply(
            view.conditional_allow_layers, action, segment
        ):
            return self._check_with_conditions(view, action, segment, resource, context or {})
        if view.deny_layers:
            key, via = _search(view.deny_layers, action, segment, resource)
            if key is not None:
                return view.decision(False, key, via)
        if view.allow_layers:
            key, via = _search(view.allow_layers, action, segment, resource)
            if key is not None:
                return view.decision(True, key, via)
        return NO_ALLOW_DECISION

    def _check_with_conditions(
        self, view: _View, action: str, segment: str, resource: str, context: Mapping[str, Any]
    ) -> Decision:
        """As check, when some applying statements have conditions: a true condition applies
        its statement, a false one drops it, an unknown one (missing context) may do either,
        so it decides nothing on its own: a definite DENY still wins; otherwise an undecided
        DENY, or an undecided ALLOW without a definite one, makes the answer CONDITIONAL."""
        deny, deny_open = self._best_applying(
            view.deny_layers, view.conditional_deny_layers, action, segment, resource, context
        )
        if deny is not None:
            return view.decision(False, deny[1], deny[2])
        allow, allow_open = self._best_applying(
            view.allow_layers, view.conditional_allow_layers, action, segment, resource, context
        )
        if deny_open and (allow is not None or allow_open):
            missing = set().union(*(keys for _, keys in deny_open))
            if allow is None:
                missing = missing.union(*(keys for _, keys in allow_open))
            return _conditional(deny_open[0][0], missing)
        if allow is not None:
            return view.decision(True, allow[1], allow[2])
        if allow_open:
            return _conditional(allow_open[0][0], set().union(*(keys for _, keys in allow_open)))
        return NO_ALLOW_DECISION

    def _best_applying(
        self,
        layers: tuple[_Layer, ...],
        conditional_layers: tuple[_Layer, ...],
        action: str,
        segment: str,
        resource: str,
        context: Mapping[str, Any],
    ) -> tuple[_Ranked | None, list[tuple[_Ranked, frozenset[str]]]]:
        """The best applying statement of one effect by (depth, key, via), conditions
        evaluated, and the undecided ones (with the keys they miss) in that order."""
        best: _Ranked | None = None
        for depth, effect_view, via in layers:
            if best is not None and depth > best[0]:
                break
            key = effect_view.first(action, segment, resource)
            if key is not None and (best is None or (depth, key) < best[:2]):
                best = (depth, key, via)
        # Layers deeper than the best definite statement cannot outrank it.
        matched = sorted(
            (depth, key, via)
            for depth, effect_view, via in conditional_layers
            if best is None or depth <= best[0]
            for key in set(effect_view.all_keys(action, segment, resource))
        )
        undecided: list[tuple[_Ranked, frozenset[str]]] = []
        for ranked in matched:
            if best is not None and ranked >= best:
                break
            condition = self._policies[ranked[1][0]].statements[ranked[1][1]].condition
            outcome = condition.evaluate(context) if condition is not None else True
            if outcome is True:
                best = ranked
                break
            if isinstance(outcome, Unknown):
                undecided.append((ranked, outcome.missing))
        if best is not None:
            # Undecided statements ranked after a definite one cannot change the answer.
            undecided = [(ranked, keys) for ranked, keys in undecided if ranked < best]
        return best, undecided

    def batch_check(
        self, items: Iterable[tuple[Subject, str, str]], context: Mapping[str, Any] | None = None
    ) -> list[Decision]:
        check = self.check
        return [check(subject, action, resource, context) for subject, action, resource in items]

    def reachable(self, subject: Subject) -> dict[Subject, tuple[Subject, ...]]:
        """The subject itself and every role/group it reaches -> its shortest path (BFS order)."""
        return dict(self._closure(subject).reach)

    def effective_statements(self, subject: Subject) -> list[EffectiveStatement]:
        """Every effective statement of every applying policy the subject holds, ordered by
        (via length, policy id, statement index); each policy once, with its best via."""
        out: list[EffectiveStatement] = []
        for pid, via in self._view(subject).held:
            for idx, s in enumerate(self._policies[pid].statements):
                out.append(EffectiveStatement(pid, idx, s.effect, s.actions, s.resources, via, s.condition))
        return out

    def policy(self, policy_id: str) -> PolicyRules | None:
        """The rules of a policy of the domain, enabled or not."""
        policy: PolicyRules | None = self._policies.get(policy_id)
        return policy

    def policy_statements(self, policy_id: str) -> tuple[Statement, ...] | None:
        """The effective statements of a known policy, enabled or not (None if unknown)."""
        policy = self._policies.get(policy_id)
        return None if policy is None else policy.statements

    def carried_statements(self, subject: Subject) -> list[tuple[str, int, Statement]]:
        """(policy id, statement index, statement) of every known policy the subject reaches through
        unexpired edges, enabled or not: what a grant of membership brings now or once a policy is
        enabled (the escalation rule must count both). Sorted by (policy id, index)."""
        held = self._closure(subject).held
        return [
            (pid, index, statement)
            for pid in sorted(held)
            if (policy := self._policies.get(pid)) is not None
            for index, statement in enumerate(policy.statements)
        ]

    def held_statements(self, subject: Subject) -> tuple[Statement, ...]:
        """The statements that apply to the subject whatever the context: those of
        :meth:`effective_statements`, but for ALLOW statements with conditions (they may not
        apply; DENY statements with conditions are kept, as they may)."""
        held = self._held.get(subject)
        if held is None:
            held = self._held[subject] = tuple(
                s
                for pid, _via in self._view(subject).held
                for s in self._policies[pid].statements
                if s.condition is None or s.effect == "DENY"
            )
        return held

    def grants_explicitly(self, subject: Subject, action: str, resource: str) -> bool:
        """Allowed by a statement naming ``action`` without wildcards (case-insensitively), and
        not denied. Permissions that hand out more than the holder has (escalate, bind) are
        given this way only: ``*`` or ``repository.Policy.*`` do not include them."""
        explicit = self._explicit.get(subject)
        if explicit is None:
            named: dict[str, list[str]] = {}
            for s in self.held_statements(subject):
                if s.effect == "ALLOW":
                    for a in s.actions:
                        if a and not has_wildcard(a):
                            named.setdefault(a.lower(), []).extend(s.resources)
            explicit = self._explicit[subject] = {a: tuple(rs) for a, rs in named.items()}
        resources = explicit.get(action.lower()) or ()
        return (
            bool(resources)
            and any(compile_pattern(r)(resource) for r in resources)
            and self.check(subject, action, resource).allowed
        )

    def list_authorized_resources(
        self,
        subject: Subject,
        resource_prefix: str = "",
        action: str | None = None,
        context: Mapping[str, Any] | None = None,
        missing: set[str] | None = None,
    ) -> list[AuthorizedResource]:
        """Resource patterns with their allowed action patterns and the denies carved out of
        them (see module doc): exact with respect to ``check`` under the same ``context``. A
        statement whose condition is false is left out; one whose condition is undecided
        (the context lacks keys: added to ``missing``) is left out when it allows and carved
        out when it denies, so the listing holds what ``check`` answers ALLOW for."""
        candidates: dict[str, set[str]] = {}
        denies: list[Statement] = []
        prefix_ok: dict[str, bool] = {}
        action_ok: dict[str, bool] = {}

        def wanted(a: str) -> bool:
            ok = action_ok.get(a)
            if ok is None:
                ok = action_ok[a] = match_action(a, action or "")
            return ok

        context = context or {}
        for pid, _via in self._view(subject).held:
            for s in self._policies[pid].statements:
                if s.condition is not None:
                    outcome = s.condition.evaluate(context)
                    if outcome is False:
                        continue
                    if isinstance(outcome, Unknown):
                        if missing is not None:
                            missing |= outcome.missing
                        if s.effect == "ALLOW":
                            continue
                if s.effect == "DENY":
                    denies.append(s)
                    continue
                actions = [a for a in s.actions if a and (not action or wanted(a))]
                if not actions:
                    continue
                for r in s.resources:
                    if not r:
                        continue
                    ok = prefix_ok.get(r)
                    if ok is None:
                        ok = prefix_ok[r] = may_match_with_prefix(r, resource_prefix)
                    if ok:
                        candidates.setdefault(r, set()).update(actions)
        # With an action filter only that action is asked about; otherwise each listed pattern.
        deny_actions = [[a for a in d.actions if a and (not action or wanted(a))] for d in denies]
        deny_resources = PatternIndex(
            (rd, k)
            for k, d in enumerate(denies)
            if deny_actions[k]
            for rd in dict.fromkeys(d.resources)
            if rd and may_match_with_prefix(rd, resource_prefix)
        )
        algebra = _Algebra(Budget(LISTING_STEPS))
        out: list[AuthorizedResource] = []
        for r in sorted(candidates):
            relevant = [(rd, deny_actions[k]) for rd, k in deny_resources.may_overlap(r) if algebra.overlaps(rd, r)]
            kept = []
            for a in sorted(candidates[r]):
                probe = (action or a).lower()
                # Dropped only when one deny takes all of it; a partial deny becomes an exception.
                if not any(
                    algebra.contains(rd, r) and any(algebra.contains(ad.lower(), probe) for ad in acts)
                    for rd, acts in relevant
                ):
                    kept.append(a)
            if not kept:
                continue
            probes = [action.lower()] if action else [a.lower() for a in kept]
            exceptions: dict[str, set[str]] = {}
            for rd, acts in relevant:
                hit = [ad for ad in acts if any(algebra.overlaps(ad.lower(), p) for p in probes)]
                if hit:
                    exceptions.setdefault(rd, set()).update(hit)
            out.append(
                AuthorizedResource(
                    r,
                    tuple(kept),
                    tuple(AuthorizedException(rd, tuple(sorted(acts))) for rd, acts in sorted(exceptions.items())),
                )
            )
        return out

    def _reverse_reach(self, starts: Iterable[Subject]) -> set[Subject]:
        """Every subject that reaches one of ``starts`` (starts included)."""
        seen = set(starts)
        stack = list(seen)
        members = self._members
        while stack:
            node = stack.pop()
            for m in members.get(node, ()):
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        return seen

    def members(
        self, target: Subject, nested: bool = False, subject_type: str | None = None
    ) -> tuple[tuple[Subject, tuple[Subject, ...]], ...]:
        """The subjects in a role or group through unexpired edges, each with the roles/groups
        between it and ``target`` (empty for a direct member): directly only, or also through
        nested roles/groups (each member once, by its shortest path); only those of
        ``subject_type`` when given. Sorted by (type, id); memoized, so paging through a large
        set costs the page, not the set."""
        key = (target, nested, subject_type)
        found = self._member_lists.get(key)
        if found is not None:
            return found
        inherited = self._inherited
        if inherited is not None and target not in inherited.targets and (subject_type is None or not nested):
            found = inherited.member_lists.get(key)
            # A nested listing visited every member: none of them may have gained or lost members.
            if found is not None and (not nested or inherited.targets.isdisjoint(m for m, _ in found)):
                self._member_lists[key] = found
                return found
        if subject_type is not None:
            found = tuple(m for m in self.members(target, nested) if m[0].type == subject_type)
            self._member_lists[key] = found
            return found
        paths: dict[Subject, tuple[Subject, ...]]
        if not nested:
            paths = {m: () for m in self._members.get(target, ())}
        else:
            paths = {target: ()}
            order = [target]
            i = 0
            while i < len(order):
                node = order[i]
                i += 1
                via = paths[node] if node == target else (node, *paths[node])
                for member in self._members.get(node, ()):
                    if member not in paths:
                        paths[member] = via
                        order.append(member)
            del paths[target]
        found = self._member_lists[key] = tuple(sorted(paths.items()))
        return found

    def member_count(self, target: Subject) -> int:
        """How many subjects are directly in a role or group (through unexpired edges)."""
        return len(self._members.get(target, ()))

    def granted_policies(self, subject: Subject) -> tuple[str, ...]:
        """The policy ids granted to the subject itself (not through membership), sorted."""
        granted: tuple[str, ...] = self._grants.get(subject, ())
        return granted

    def subjects_holding(self, policy_id: str) -> list[SubjectGrant]:
        """Subjects holding the policy directly or through membership (GROUP/ROLE subjects
        included), whether or not the policy is enabled or known, sorted by (type, id)."""
        holders = self._holders.get(policy_id)
        if not holders:
            return []
        return [SubjectGrant(s, self._closure(s).held[policy_id]) for s in sorted(self._reverse_reach(holders))]

    def _allow_policy_index(self) -> _EffectView | None:
        if self._allow_index_built:
            return self._allow_index
        entries = []
        for pid in sorted(self._holders):
            policy = self._applying(pid)
            if policy is None:
                continue
            for idx, statement in enumerate(policy.statements):
                cs = _compile_statement(statement)
                if cs is not None and cs.effect == "ALLOW":
                    entries.append(((pid, idx), cs))
        self._allow_index = _EffectView.build(entries)
        self._allow_index_built = True
        return self._allow_index

    def who_can(self, action: str, resource: str) -> list[SubjectDecision]:
        """Every known subject whose check of (action, resource) is ALLOW, with its decision,
        sorted by (type, id)."""
        index = self._allow_policy_index()
        if index is None:
            return []
        folded = action.lower()
        policies = {key[0] for key in index.all_keys(folded, action_segment(folded), resource)}
        if not policies:
            return []
        starts = [h for pid in policies for h in self._holders[pid]]
        out = []
        for s in sorted(self._reverse_reach(starts)):
            decision = self.check(s, action, resource)
            if decision.allowed:
                out.append(SubjectDecision(s, decision))
        return out
