"""The policy evaluation engine: policies + assignment graph in, decisions out.

Pure: no I/O, no database, no gRPC. A :class:`DomainIndex` is built from one domain's
policies and assignment edges at a given ``now`` and answers every authorization
question of PRODUCT.md §4 from memory.

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
- **list_authorized_resources.** For every resource pattern R of the subject's
  applicable ALLOW statements that can match some resource starting with the prefix
  (``*`` and ``*/x`` can; ``b/*`` cannot for prefix ``a/``), and every action pattern A
  of the same statement (when an ``action`` filter is given: only the A whose pattern
  matches it), the pair is reported when ``check(subject, A, R)`` — with A and R taken
  as literal strings — is ALLOW. So explicit denies remove pairs, and every reported
  pair is consistent with ``check`` by construction. Deny patterns without ``?`` that
  literally match a pattern A (or R) match every string A (or R) matches, so with such
  denies the listing is also complete: every concretely allowed (action, resource)
  under the prefix is covered by a reported (R, A). A deny that only partly covers an
  allowed pattern (e.g. deny ``a?`` against allow ``a*``) can hide that pattern.
  Conversely a reported pattern may still contain narrower denied instances (allow
  ``a.*`` with deny ``a.x`` reports ``a.*``): ``check`` remains the authority.
- **subjects_holding(policy_id)** reports assignments, whether or not the policy is
  enabled or known; **who_can** and **effective_statements** only count policies that
  apply (enabled and present).

Performance
-----------
Per subject, lazily and memoized: the reachable set (BFS over membership edges in
sorted order) and a *view* of the statements it holds, split by effect and bucketed by
action pattern: literal patterns by the whole lower-cased action, patterns with a
``.`` before their first wildcard by their first segment, and the rest in a catch-all
list. Each bucket is sorted by (via length, policy id, statement index) and each entry
carries its prebuilt :class:`Decision`, so a warm ``check`` looks at three short lists
per effect and stops at the first match. Compiled patterns are cached per distinct
pattern, compiled statements per policy.

The index is immutable after construction except for its memo dictionaries, which
only ever receive whole, never-mutated values: it is safe to share between threads.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Iterable

from policyhub.engine.model import (
    ALLOWED,
    EXPLICIT_DENY,
    GRANT_TYPES,
    NO_MATCHING_ALLOW,
    AuthorizedResource,
    Decision,
    Edge,
    EffectiveStatement,
    PolicyRules,
    Subject,
    SubjectDecision,
    SubjectGrant,
)
from policyhub.engine.patterns import (
    Matcher,
    action_bucket,
    action_segment,
    compile_pattern,
    is_match_all,
    match_action,
    may_match_with_prefix,
)

__all__ = ["DomainIndex"]

NO_ALLOW_DECISION = Decision(False, NO_MATCHING_ALLOW)

# entry of a view bucket: (sort key, action matcher or None = any, resource matcher or None = any, decision)
_Entry = tuple[tuple[int, str, int], "Matcher | None", "Matcher | None", Decision]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


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
    """One statement, compiled for indexing (shared by every subject holding the policy)."""
    __slots__ = ("effect", "exact", "segments", "catch", "has_catch", "resource")

    def __init__(self, effect: str, exact: tuple[str, ...], segments: tuple[tuple[str, Matcher | None], ...],
                 catch: Matcher | None, has_catch: bool, resource: Matcher | None):
        self.effect = effect
        self.exact = exact          # lower-cased literal action patterns
        self.segments = segments    # (first segment, combined matcher of the patterns in it)
        self.catch = catch          # combined matcher of catch-all patterns, None = matches anything
        self.has_catch = has_catch
        self.resource = resource    # combined resource matcher, None = matches anything


def _compile_statement(effect: str, actions: tuple[str, ...], resources: tuple[str, ...]) -> _CompiledStatement | None:
    resource_patterns = [r for r in resources if r]
    action_patterns = [a.lower() for a in actions if a]
    if not resource_patterns or not action_patterns:
        return None   # can never apply
    if any(is_match_all(r) for r in resource_patterns):
        resource = None
    else:
        resource = _any_of([compile_pattern(r) for r in dict.fromkeys(resource_patterns)])
    exact: list[str] = []
    segments: dict[str, list[str]] = {}
    catch: list[str] = []
    for a in dict.fromkeys(action_patterns):
        bucket = action_bucket(a)
        if bucket is None:
            catch.append(a)
        elif bucket[0] == "exact":
            exact.append(a)
        else:
            segments.setdefault(bucket[1], []).append(a)
    if any(is_match_all(a) for a in catch):
        catch_matcher = None
    else:
        catch_matcher = _any_of([compile_pattern(a) for a in catch]) if catch else None
    return _CompiledStatement(
        effect, tuple(exact),
        tuple((seg, _any_of([compile_pattern(a) for a in pats])) for seg, pats in segments.items()),
        catch_matcher, bool(catch), resource)


class _EffectView:
    """Statements of one effect held by one subject, bucketed by action pattern."""
    __slots__ = ("exact", "segments", "catch")

    def __init__(self, exact: dict[str, tuple[_Entry, ...]], segments: dict[str, tuple[_Entry, ...]],
                 catch: tuple[_Entry, ...]):
        self.exact = exact
        self.segments = segments
        self.catch = catch

    def first(self, action: str, segment: str, resource: str) -> Decision | None:
        """Decision of the best (smallest key) applicable entry, or None."""
        best_key = None
        best = None
        entries = self.exact.get(action)
        if entries:
            for key, _am, rm, decision in entries:
                if rm is None or rm(resource):
                    best_key, best = key, decision
                    break
        entries = self.segments.get(segment)
        if entries:
            for key, am, rm, decision in entries:
                if best_key is not None and key >= best_key:
                    break
                if am(action) and (rm is None or rm(resource)):
                    best_key, best = key, decision
                    break
        entries = self.catch
        if entries:
            for key, am, rm, decision in entries:
                if best_key is not None and key >= best_key:
                    break
                if (am is None or am(action)) and (rm is None or rm(resource)):
                    best = decision
                    break
        return best


class _View:
    __slots__ = ("deny", "allow", "held")

    def __init__(self, deny: _EffectView | None, allow: _EffectView | None,
                 held: tuple[tuple[str, tuple[Subject, ...]], ...]):
        self.deny = deny
        self.allow = allow
        self.held = held     # (policy_id, via) of applying policies, sorted by (len(via), policy_id)


_EMPTY_VIEW = _View(None, None, ())


class _Closure:
    __slots__ = ("reach", "held")

    def __init__(self, reach: dict[Subject, tuple[Subject, ...]], held: dict[str, tuple[Subject, ...]]):
        self.reach = reach   # reached subject -> shortest (lexicographically smallest) path, BFS order
        self.held = held     # policy id -> best via, for every POLICY edge reached (policy known or not)


class DomainIndex:
    """Compiled, read-only evaluation index of one domain at one instant (see module doc)."""

    def __init__(self, policies: Iterable[PolicyRules], edges: Iterable[Edge], now: datetime):
        self.now = now = _utc(now)
        self._policies: dict[str, PolicyRules] = {}
        for policy in policies:
            if policy.policy_id in self._policies:
                raise ValueError(f"duplicate policy id {policy.policy_id!r}")
            self._policies[policy.policy_id] = policy

        grants: dict[Subject, set[str]] = {}
        member_of: dict[Subject, set[Subject]] = {}
        known: set[Subject] = set()
        next_expiry: datetime | None = None
        for edge in edges:
            if edge.grant_type not in GRANT_TYPES:
                raise ValueError(f"unknown grant type {edge.grant_type!r}")
            target = Subject(edge.grant_type, edge.grant_id) if edge.grant_type != "POLICY" else None
            known.add(edge.subject)
            if target is not None:
                known.add(target)
            if edge.expires_at is not None:
                expires_at = _utc(edge.expires_at)
                if expires_at <= now:
                    continue
                if next_expiry is None or expires_at < next_expiry:
                    next_expiry = expires_at
            if target is None:
                grants.setdefault(edge.subject, set()).add(edge.grant_id)
            else:
                member_of.setdefault(edge.subject, set()).add(target)

        self._next_expiry = next_expiry
        self._known: tuple[Subject, ...] = tuple(sorted(known))
        self._grants: dict[Subject, tuple[str, ...]] = {s: tuple(sorted(p)) for s, p in grants.items()}
        self._member_of: dict[Subject, tuple[Subject, ...]] = {s: tuple(sorted(t, reverse=True)) for s, t in member_of.items()}
        members: dict[Subject, set[Subject]] = {}
        for s, targets in member_of.items():
            for t in targets:
                members.setdefault(t, set()).add(s)
        self._members: dict[Subject, tuple[Subject, ...]] = {t: tuple(sorted(m)) for t, m in members.items()}
        holders: dict[str, set[Subject]] = {}
        for s, pids in grants.items():
            for pid in pids:
                holders.setdefault(pid, set()).add(s)
        self._holders: dict[str, tuple[Subject, ...]] = {p: tuple(sorted(h)) for p, h in holders.items()}

        # memo caches (whole values only; see module doc)
        self._closures: dict[Subject, _Closure] = {}
        self._views: dict[Subject, _View] = {}
        self._compiled: dict[str, tuple[_CompiledStatement | None, ...]] = {}
        self._allow_index: _EffectView | None = None

    # ------------------------------------------------------------------ properties

    @property
    def next_expiry(self) -> datetime | None:
        """Earliest expiry still in the future at construction; rebuild the index then."""
        return self._next_expiry

    @property
    def subjects(self) -> tuple[Subject, ...]:
        """Every subject known to the graph (subject of an edge, or its ROLE/GROUP target), sorted."""
        return self._known

    # ------------------------------------------------------------------ memoized building blocks

    def _closure(self, subject: Subject) -> _Closure:
        closure = self._closures.get(subject)
        if closure is not None:
            return closure
        if subject not in self._grants and subject not in self._member_of:
            return _Closure({subject: (subject,)}, {})   # nothing to reach: not memoized
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

    def _compiled_policy(self, policy: PolicyRules) -> tuple[_CompiledStatement | None, ...]:
        compiled = self._compiled.get(policy.policy_id)
        if compiled is None:
            compiled = tuple(_compile_statement(s.effect, s.actions, s.resources) for s in policy.statements)
            self._compiled[policy.policy_id] = compiled
        return compiled

    def _view(self, subject: Subject) -> _View:
        view = self._views.get(subject)
        if view is not None:
            return view
        closure = self._closure(subject)
        if not closure.held:
            return _EMPTY_VIEW
        held = sorted(((pid, via) for pid, via in closure.held.items()
                       if (p := self._policies.get(pid)) is not None and p.enabled),
                      key=lambda item: (len(item[1]), item[0]))
        buckets: dict[str, tuple[dict, dict, list]] = {"ALLOW": ({}, {}, []), "DENY": ({}, {}, [])}
        for pid, via in held:
            depth = len(via)
            for idx, cs in enumerate(self._compiled_policy(self._policies[pid])):
                if cs is None:
                    continue
                key = (depth, pid, idx)
                if cs.effect == "DENY":
                    decision = Decision(False, EXPLICIT_DENY, pid, idx, via)
                else:
                    decision = Decision(True, ALLOWED, pid, idx, via)
                exact, segments, catch = buckets[cs.effect]
                for action in cs.exact:
                    exact.setdefault(action, []).append((key, None, cs.resource, decision))
                for segment, matcher in cs.segments:
                    segments.setdefault(segment, []).append((key, matcher, cs.resource, decision))
                if cs.has_catch:
                    catch.append((key, cs.catch, cs.resource, decision))
        # `held` is in key order and indices ascend, so every list is already sorted.
        effect_views = {}
        for effect, (exact, segments, catch) in buckets.items():
            if exact or segments or catch:
                effect_views[effect] = _EffectView({k: tuple(v) for k, v in exact.items()},
                                                   {k: tuple(v) for k, v in segments.items()}, tuple(catch))
            else:
                effect_views[effect] = None
        view = _View(effect_views["DENY"], effect_views["ALLOW"], tuple(held))
        self._views[subject] = view
        return view

    # ------------------------------------------------------------------ questions

    def check(self, subject: Subject, action: str, resource: str) -> Decision:
        view = self._views.get(subject) or self._view(subject)
        action = action.lower()
        dot = action.find(".")
        segment = action if dot < 0 else action[:dot]
        if view.deny is not None:
            decision = view.deny.first(action, segment, resource)
            if decision is not None:
                return decision
        if view.allow is not None:
            decision = view.allow.first(action, segment, resource)
            if decision is not None:
                return decision
        return NO_ALLOW_DECISION

    def batch_check(self, items: Iterable[tuple[Subject, str, str]]) -> list[Decision]:
        check = self.check
        return [check(subject, action, resource) for subject, action, resource in items]

    def reachable(self, subject: Subject) -> dict[Subject, tuple[Subject, ...]]:
        """The subject itself and every role/group it reaches -> its shortest path (BFS order)."""
        return dict(self._closure(subject).reach)

    def effective_statements(self, subject: Subject) -> list[EffectiveStatement]:
        """Every effective statement of every applying policy the subject holds, ordered by
        (via length, policy id, statement index); each policy once, with its best via."""
        out: list[EffectiveStatement] = []
        for pid, via in self._view(subject).held:
            for idx, s in enumerate(self._policies[pid].statements):
                out.append(EffectiveStatement(pid, idx, s.effect, s.actions, s.resources, via))
        return out

    def list_authorized_resources(self, subject: Subject, resource_prefix: str = "",
                                  action: str | None = None) -> list[AuthorizedResource]:
        """Resource patterns with their allowed action patterns (see module doc)."""
        candidates: dict[str, set[str]] = {}
        prefix_ok: dict[str, bool] = {}
        action_ok: dict[str, bool] = {}
        for pid, _via in self._view(subject).held:
            for s in self._policies[pid].statements:
                if s.effect != "ALLOW":
                    continue
                actions = [a for a in s.actions if a]
                if action:
                    kept = []
                    for a in actions:
                        ok = action_ok.get(a)
                        if ok is None:
                            ok = action_ok[a] = match_action(a, action)
                        if ok:
                            kept.append(a)
                    actions = kept
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
        out: list[AuthorizedResource] = []
        for r in sorted(candidates):
            allowed = tuple(a for a in sorted(candidates[r]) if self.check(subject, a, r).allowed)
            if allowed:
                out.append(AuthorizedResource(r, allowed))
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

    def subjects_holding(self, policy_id: str) -> list[SubjectGrant]:
        """Subjects holding the policy directly or through membership (GROUP/ROLE subjects
        included), whether or not the policy is enabled or known, sorted by (type, id)."""
        holders = self._holders.get(policy_id)
        if not holders:
            return []
        return [SubjectGrant(s, self._closure(s).held[policy_id]) for s in sorted(self._reverse_reach(holders))]

    def _allow_policy_index(self) -> _EffectView:
        index = self._allow_index
        if index is not None:
            return index
        exact: dict[str, list] = {}
        segments: dict[str, list] = {}
        catch: list = []
        for pid in sorted(self._policies):
            policy = self._policies[pid]
            if not policy.enabled or pid not in self._holders:
                continue
            for idx, cs in enumerate(self._compiled_policy(policy)):
                if cs is None or cs.effect != "ALLOW":
                    continue
                for a in cs.exact:
                    exact.setdefault(a, []).append((pid, None, cs.resource))
                for segment, matcher in cs.segments:
                    segments.setdefault(segment, []).append((pid, matcher, cs.resource))
                if cs.has_catch:
                    catch.append((pid, cs.catch, cs.resource))
        index = _EffectView({k: tuple(v) for k, v in exact.items()},
                            {k: tuple(v) for k, v in segments.items()}, tuple(catch))
        self._allow_index = index
        return index

    def who_can(self, action: str, resource: str) -> list[SubjectDecision]:
        """Every known subject whose check of (action, resource) is ALLOW, with its decision,
        sorted by (type, id)."""
        index = self._allow_policy_index()
        folded = action.lower()
        segment = action_segment(folded)
        policies: set[str] = set()
        for entries in (index.exact.get(folded, ()), index.segments.get(segment, ()), index.catch):
            for pid, am, rm in entries:
                if pid not in policies and (am is None or am(folded)) and (rm is None or rm(resource)):
                    policies.add(pid)
        if not policies:
            return []
        starts = [h for pid in policies for h in self._holders[pid]]
        out = []
        for s in sorted(self._reverse_reach(starts)):
            decision = self.check(s, action, resource)
            if decision.allowed:
                out.append(SubjectDecision(s, decision))
        return out
