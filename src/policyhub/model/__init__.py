"""mongoengine documents and their indexes. Only the manager layer imports these."""
from policyhub.model.policy import PolicyDocument, StatementDocument
from policyhub.model.repository import RepositoryDocument

ALL_DOCUMENTS = (PolicyDocument, RepositoryDocument)

__all__ = ["ALL_DOCUMENTS", "PolicyDocument", "RepositoryDocument", "StatementDocument"]
