"""mongoengine documents and their indexes. Only the manager layer imports these."""
from policyhub.model.assignment import AssignmentDocument
from policyhub.model.policy import PolicyDocument, StatementDocument
from policyhub.model.repository import RepositoryDocument
from policyhub.model.revision import RevisionDocument

ALL_DOCUMENTS = (PolicyDocument, RepositoryDocument, AssignmentDocument, RevisionDocument)

__all__ = ["ALL_DOCUMENTS", "AssignmentDocument", "PolicyDocument", "RepositoryDocument", "RevisionDocument",
           "StatementDocument"]
