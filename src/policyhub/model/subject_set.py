"""Group and role documents: named sets of subjects that can themselves hold grants.

Who is in a set, and what the set holds, are assignments (subject -> GROUP/ROLE membership,
GROUP/ROLE subject -> grant); these documents carry the set's own fields, so a set exists
(and can be named, described and listed) with or without members.
"""

from mongoengine import DateTimeField, DictField, Document, ListField, StringField


class _SubjectSetDocument(Document):
    name = StringField(required=True)
    description = StringField(default="")
    labels = ListField()
    tags = DictField()
    domain_id = StringField(required=True)
    created_at = DateTimeField(required=True)
    updated_at = DateTimeField(required=True)

    meta = {"abstract": True}


def _indexes(id_field: str) -> list[dict]:
    # Every query starts with domain_id, so every index does too; _id ends the ones a list sorts
    # by, as it ends every list sort (the tie-breaker).
    return [
        {"fields": ["domain_id", id_field], "unique": True, "name": f"domain_{id_field}"},
        {"fields": ["domain_id", "name", "_id"], "name": "domain_name_id"},
        {"fields": ["domain_id", "created_at", "_id"], "name": "domain_created_at_id"},
    ]


# Indexes earlier versions created, dropped at start: no _id, so list's sort was not served.
SUPERSEDED_INDEXES = ("domain_name", "domain_created_at")


class GroupDocument(_SubjectSetDocument):
    group_id = StringField(required=True)

    meta = {"collection": "group", "auto_create_index": False, "indexes": _indexes("group_id")}


class RoleDocument(_SubjectSetDocument):
    role_id = StringField(required=True)

    meta = {"collection": "role", "auto_create_index": False, "indexes": _indexes("role_id")}
