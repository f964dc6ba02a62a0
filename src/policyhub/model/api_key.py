"""An API key: only its SHA-256 hash is stored; the plaintext is shown once, at creation."""

from mongoengine import DateTimeField, Document, StringField


class ApiKeyDocument(Document):
    api_key_id = StringField(required=True)
    key_hash = StringField(required=True)
    name = StringField(default="")
    # The key acts as this service account of the domain.
    service_account_id = StringField(required=True)
    domain_id = StringField(required=True)
    state = StringField(required=True, choices=("ACTIVE", "REVOKED"), default="ACTIVE")
    created_at = DateTimeField(required=True)
    revoked_at = DateTimeField(null=True)

    meta = {
        "collection": "api_key",
        "auto_create_index": False,
        "indexes": [
            # Looked up by id on every call that presents a key.
            {"fields": ["api_key_id"], "unique": True, "name": "api_key_id"},
            # The default order of list (oldest first; _id breaks ties).
            {"fields": ["domain_id", "created_at", "_id"], "name": "domain_created_at_id"},
        ],
    }


# Indexes earlier versions created, dropped at start: no _id, so list's sort was not served.
SUPERSEDED_INDEXES = ("domain_created_at",)
