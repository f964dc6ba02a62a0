"""The assignment document: subject -> grant (a policy, or membership of a role or group)."""

from mongoengine import DateTimeField, DictField, Document, ListField, StringField

from policyhub.domain import GrantType, SubjectType, values


class AssignmentDocument(Document):
    assignment_id = StringField(required=True)
    subject_type = StringField(required=True, choices=values(SubjectType))
    subject_id = StringField(required=True)
    grant_type = StringField(required=True, choices=values(GrantType))
    grant_id = StringField(required=True)
    expires_at = DateTimeField(null=True)
    labels = ListField()
    tags = DictField()
    domain_id = StringField(required=True)
    created_at = DateTimeField(required=True)
    # Not declared: `removal`, a remover's claim, lives only between its claim and its delete
    # and is written and read by the assignment manager alone.

    meta = {
        "collection": "assignment",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["domain_id", "assignment_id"], "unique": True, "name": "domain_assignment_id"},
            # One assignment per (subject, grant): batch add is idempotent on it.
            {
                "fields": ["domain_id", "subject_type", "subject_id", "grant_type", "grant_id"],
                "unique": True,
                "name": "domain_subject_grant",
            },
            {"fields": ["domain_id", "grant_type", "grant_id"], "name": "domain_grant"},
            # The default order of list (oldest first; _id breaks ties), created_at filters.
            {"fields": ["domain_id", "created_at", "_id"], "name": "domain_created_at_id"},
        ],
    }


# Indexes earlier versions created, dropped at start: no _id, so list's sort was not served.
SUPERSEDED_INDEXES = ("domain_created_at",)
