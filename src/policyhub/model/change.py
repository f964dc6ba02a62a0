"""The change log: what each write of a domain changed, at the domain revision it landed at.

Every revision bump of a domain writes exactly one record with that revision as `seq`, so a
domain's records are numbered 1, 2, 3, ... without holes; a hole means a writer died between
its bump and its record (readers wait briefly, then step over it). A write that changed more
than fits one record (a bulk import: over 10,000 changes) moves the revision on by several at
once, one record per revision, each with the write's transaction id. Records expire at
`purge_at` (the configured retention).
"""

from mongoengine import DateTimeField, DictField, Document, IntField, ListField, StringField


class ChangeDocument(Document):
    domain_id = StringField(required=True)
    seq = IntField(required=True)
    # [{kind: POLICY|ASSIGNMENT|GROUP|ROLE, id, operation: CREATE|UPDATE|DELETE}] in the order made
    changes = ListField(DictField())
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
