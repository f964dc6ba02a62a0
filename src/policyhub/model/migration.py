"""Start-up migrations that have run against this database: one document each, so a migration
that must read a whole collection does it once per installation, not at every start."""

from mongoengine import DateTimeField, Document, StringField


class MigrationDocument(Document):
    name = StringField(required=True)
    done_at = DateTimeField(required=True)

    meta = {
        "collection": "migration",
        "auto_create_index": False,
        "indexes": [{"fields": ["name"], "unique": True, "name": "name"}],
    }
