"""The policy document. Managed policies are stored once with domain_id
policyhub.domain.MANAGED_DOMAIN_ID."""

from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentListField,
    IntField,
    ListField,
    StringField,
)

from policyhub.domain import Effect, PolicyState, values


class StatementDocument(EmbeddedDocument):
    effect = StringField(required=True, choices=values(Effect))
    actions = ListField(StringField())
    resources = ListField(StringField())
    conditions = DictField()


class PolicyDocument(Document):
    policy_id = StringField(required=True)
    name = StringField(required=True)
    description = StringField(default="")
    state = StringField(required=True, choices=values(PolicyState), default=PolicyState.ENABLED.value)
    permissions = ListField(StringField())
    statements = EmbeddedDocumentListField(StatementDocument)
    labels = ListField()
    tags = DictField()
    repository_id = StringField(required=True)
    project_id = StringField(default="")
    domain_id = StringField(required=True)
    is_managed = BooleanField(default=False)
    version = IntField(default=1)
    etag = StringField(required=True)
    created_at = DateTimeField(required=True)
    updated_at = DateTimeField(required=True)
    # Soft delete: restorable until purge_at; restore puts back the state and the assignments
    # a cascade delete took with it.
    deleted_at = DateTimeField(null=True)
    purge_at = DateTimeField(null=True)
    state_before_delete = StringField(null=True)
    parked_assignments = ListField(DictField())

    # Every query starts with domain_id, so every index does too; the domain_live_* ones follow it
    # with deleted_at, the equality that scopes a query to live policies (null: live), then the
    # field a list filters or sorts by, and _id, the tie-breaker of every list sort.
    meta = {
        "collection": "policy",
        "auto_create_index": False,
        "indexes": [
            # One live policy per id (deleted_at null); each soft-deleted one keeps its id under
            # its own deleted_at, so a deleted id can be created again while it stays restorable.
            {"fields": ["domain_id", "policy_id", "deleted_at"], "unique": True, "name": "domain_policy_id_deleted_at"},
            # The default order of list (oldest first), stat's and count's scope, created_at filters.
            {"fields": ["domain_id", "deleted_at", "created_at", "_id"], "name": "domain_live_created_at"},
            {"fields": ["domain_id", "deleted_at", "name", "_id"], "name": "domain_live_name"},
            {"fields": ["domain_id", "deleted_at", "state", "created_at", "_id"], "name": "domain_live_state"},
            {"fields": ["domain_id", "deleted_at", "labels", "created_at", "_id"], "name": "domain_live_labels"},
            {"fields": ["domain_id", "deleted_at", "repository_id"], "name": "domain_live_repository"},
            {"fields": ["domain_id", "deleted_at", "project_id"], "name": "domain_live_project"},
            # MongoDB removes soft-deleted policies once purge_at passes (the sweep does it too).
            {"fields": ["purge_at"], "expireAfterSeconds": 0, "name": "purge_ttl"},
        ],
    }


# Indexes earlier versions created, dropped at start: the unique (domain_id, policy_id) one
# would keep a soft-deleted policy's id from being created again; the others lacked deleted_at
# (and _id), so live-scoped queries and their sorts were not served by them.
SUPERSEDED_INDEXES = (
    "domain_policy_id",
    "domain_name",
    "domain_state",
    "domain_repository",
    "domain_created_at",
    "domain_labels",
    "domain_project",
)
