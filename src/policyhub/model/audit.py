"""The audit entry: one per mutation."""

from mongoengine import DateTimeField, DictField, Document, StringField


class AuditDocument(Document):
    audit_id = StringField(required=True)
    transaction_id = StringField(required=True)
    caller_type = StringField(required=True)
    caller_id = StringField(required=True)
    method = StringField(required=True)
    resource_type = StringField(required=True)
    resource_id = StringField(required=True)
    before = DictField(null=True)
    after = DictField(null=True)
    domain_id = StringField(required=True)
    created_at = DateTimeField(required=True)

    meta = {
        "collection": "audit",
        "auto_create_index": False,
        "indexes": [
            # The default order of list (oldest first; _id breaks ties), created_at filters.
            {"fields": ["domain_id", "created_at", "_id"], "name": "domain_created_at_id"},
            # What happened to one resource, and what one transaction did.
            {"fields": ["domain_id", "resource_type", "resource_id"], "name": "domain_resource"},
            {"fields": ["domain_id", "transaction_id"], "name": "domain_transaction"},
        ],
    }


# Indexes earlier versions created, dropped at start: no _id, so list's sort was not served.
SUPERSEDED_INDEXES = ("domain_created_at",)
