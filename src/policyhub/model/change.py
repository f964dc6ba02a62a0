"""The change log: what each write of a domain changed, at the domain revision it landed at.

Every revision bump of a domain writes exactly one record with that revision as `seq`, so a
domain's records are numbered 1, 2, 3, ... without holes; a hole means a writer died between
its bump and its record (readers wait briefly, then step over it). A write that changed more
than fits one record (a bulk import: over 10,000 changes) moves the revision on by several at
once, one record per revision, each with the write's transaction id. Records expire at
`purge_at` (the configured retention).

An ASSIGNMENT change also names the assignment's pair (`subject` and `grant`, each {type, id}):
after a delete the assignment is gone, and an evaluation index still has to find its edge. A
CREATE also carries the assignment's `expires_at` (null: never), so an index can apply it from
the log without reading the assignment back. Each write bumps the revision after it wrote, so
two writes of one pair may be logged in the other order than they reached the store; a writer
reads its pairs back once its revision has moved, and marks `recheck` each assignment change the
store no longer agrees with (an index loads that pair instead). The update of one policy (Policy/update without a
rename, enable, disable) carries `rules`: its state, permissions and statements as written, for
the same reason, with its created_at and version (which write of which document it is: each write
bumps the revision after it wrote, so two updates of one policy may be logged in either order).
A write that failed part-way logs no changes and is marked `incomplete`: what it changed (and
perhaps undid) is not known, so an evaluation index rebuilds rather than apply the log.
"""

from mongoengine import BooleanField, DateTimeField, DictField, Document, IntField, ListField, StringField


class ChangeDocument(Document):
    domain_id = StringField(required=True)
    seq = IntField(required=True)
    # [{kind: POLICY|ASSIGNMENT|GROUP|ROLE, id, operation: CREATE|UPDATE|DELETE}] in the order made
    # (ASSIGNMENT ones with subject and grant, a CREATE with expires_at, and recheck when the
    # store disagreed; a POLICY UPDATE of one policy with rules)
    changes = ListField(DictField())
    incomplete = BooleanField(default=False)
    transaction_id = StringField(default="")
    created_at = DateTimeField(required=True)
    purge_at = DateTimeField(required=True)

    meta = {
        "collection": "change",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["domain_id", "seq"], "unique": True, "name": "domain_seq"},
            {"fields": ["purge_at"], "expireAfterSeconds": 0, "name": "purge_ttl"},
        ],
    }
