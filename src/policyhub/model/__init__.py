"""mongoengine documents and their indexes. Only the manager layer imports these."""

from policyhub.model.api_key import ApiKeyDocument
from policyhub.model.assignment import AssignmentDocument
from policyhub.model.audit import AuditDocument
from policyhub.model.change import ChangeDocument
from policyhub.model.policy import SUPERSEDED_INDEXES, PolicyDocument, StatementDocument
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
)

__all__ = [
    "ALL_DOCUMENTS",
    "ApiKeyDocument",
    "AssignmentDocument",
    "AuditDocument",
    "ChangeDocument",
    "GroupDocument",
    "PolicyDocument",
    "RepositoryDocument",
    "RevisionDocument",
    "RoleDocument",
    "SUPERSEDED_INDEXES",
    "StatementDocument",
]
