"""Pure policy evaluation engine (no I/O): policies + assignment graph in, decisions out."""

from policyhub.engine.evaluator import NO_ALLOW_DECISION, DomainIndex
from policyhub.engine.model import (
    ALLOWED,
    EFFECTS,
    EXPLICIT_DENY,
    GRANT_TYPES,
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
from policyhub.engine.patterns import (
    compile_action_pattern,
    compile_pattern,
    compile_resource_pattern,
    match_action,
    match_resource,
    may_match_with_prefix,
)

__all__ = [
    "ALLOWED",
    "EFFECTS",
    "EXPLICIT_DENY",
    "GRANT_TYPES",
    "NO_ALLOW_DECISION",
    "NO_MATCHING_ALLOW",
    "AuthorizedException",
    "AuthorizedResource",
    "Decision",
    "DomainIndex",
    "Edge",
    "EffectiveStatement",
    "PolicyRules",
    "Statement",
    "Subject",
    "SubjectDecision",
    "SubjectGrant",
    "compile_action_pattern",
    "compile_pattern",
    "compile_resource_pattern",
    "match_action",
    "match_resource",
    "may_match_with_prefix",
]
