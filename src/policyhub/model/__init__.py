"""mongoengine documents and their indexes. Only the manager layer imports these."""

from policyhub.model import api_key, assignment, audit, policy, subject_set
from policyhub.model.api_key import ApiKeyDocument
from policyhub.model.assignment import AssignmentDocument
from policyhub.model.audit import AuditDocument
from policyhub.model.change import ChangeDocument
from policyhub.model.migration import MigrationDocument
from policyhub.model.policy import PolicyDocument, StatementDocument
from policyhub.model.repository import RepositoryDocument
from policyhub.model.revision import RevisionDocument
from policyhub.model.subject_set import GroupDocument, RoleDocument

ALL_DOCUMENTS = (
    PolicyDocument,
    RepositoryDocument,
    AssignmentDocument,
    RevisionDocument,
    AuditDocument,
    ApiKeyDocument,
    GroupDocument,
    RoleDocument,
    ChangeDocument,
    MigrationDocument,
)

# By document: the names of indexes earlier versions created that are dropped at start.
SUPERSEDED_INDEXES = {
    PolicyDocument: policy.SUPERSEDED_INDEXES,
    AssignmentDocument: assignment.SUPERSEDED_INDEXES,
    AuditDocument: audit.SUPERSEDED_INDEXES,
    ApiKeyDocument: api_key.SUPERSEDED_INDEXES,
    GroupDocument: subject_set.SUPERSEDED_INDEXES,
    RoleDocument: subject_set.SUPERSEDED_INDEXES,
}

__all__ = [
    "ALL_DOCUMENTS",
    "ApiKeyDocument",
    "AssignmentDocument",
    "AuditDocument",
    "ChangeDocument",
    "GroupDocument",
    "MigrationDocument",
    "PolicyDocument",
    "RepositoryDocument",
    "RevisionDocument",
    "RoleDocument",
    "SUPERSEDED_INDEXES",
    "StatementDocument",
]
