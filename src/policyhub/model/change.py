"""The change log: what each write of a domain changed, at the domain revision it landed at.

Every revision bump of a domain writes exactly one record with that revision as `seq`, so a
domain's records are numbered 1, 2, 3, ... without holes; a hole means a writer died between
its bump and its record (readers wait briefly, then step over it). Records expire at
`purge_at` (the configured retention).
"""

from mongoengine import DateTimeField, DictField, Document, IntField, ListField, StringField


class ChangeDocument(Document):
    domain_id = StringField(required=True)
    seq = IntField(required=True)
    # [{kind: POLICY|ASSIGNMENT|GROUP|ROLE, id, operation: CREATE|UPDATE|DELETE}] in the order made
    changes = ListField(DictField())
    # changes beyond the most one record keeps (see RevisionManager): left out, but counted, so
    # a reader knows the record is not whole
    omitted = IntField(default=0)
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
