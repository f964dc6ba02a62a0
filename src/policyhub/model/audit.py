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
            {"fields": ["domain_id", "created_at"], "name": "domain_created_at"},
            {"fields": ["domain_id", "resource_type", "resource_id"], "name": "domain_resource"},
            {"fields": ["domain_id", "transaction_id"], "name": "domain_transaction"},
        ],
    }
