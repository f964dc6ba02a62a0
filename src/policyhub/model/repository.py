"""The repository document. Repositories are installation-wide (no domain_id)."""

from mongoengine import DateTimeField, Document, StringField

from policyhub.domain import RepositoryType, values


class RepositoryDocument(Document):
    repository_id = StringField(required=True)
    name = StringField(required=True)
    repository_type = StringField(required=True, choices=values(RepositoryType))
    endpoint = StringField(default="")
    # remote only: the remote's local repository, named in every call to it
    remote_repository_id = StringField(default="")
    created_at = DateTimeField(required=True)

    meta = {
        "collection": "repository",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["repository_id"], "unique": True, "name": "repository_id"},
            {"fields": ["name"], "unique": True, "name": "name"},
            {"fields": ["repository_type"], "name": "repository_type"},
        ],
    }
