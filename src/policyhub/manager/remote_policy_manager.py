"""Policies of remote repositories: another installation's Policy API, read-only, reached
through policyhub.remote.client; each answer is tagged with the repository it came from."""

from __future__ import annotations

from typing import Any

from policyhub.domain import RepositoryType
from policyhub.errors import FailedPrecondition, NotFound, PolicyHubError
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.remote.client import Remote, RemotePolicyClient
from policyhub.remote.endpoint import parse_endpoint


class RemotePolicyManager:
    def __init__(self, client: RemotePolicyClient, repositories: RepositoryManager):
        self.client = client
        self.repositories = repositories

    @staticmethod
    def parse_endpoint(value: str) -> str:
        """The endpoint in its canonical form; INVALID_ARGUMENT naming `endpoint` when malformed."""
        return parse_endpoint(value).url

    def probe(self, endpoint: str, domain_id: str) -> str:
        """The id of the endpoint's local repository, whose policies a registration serves."""
        return self.client.probe(endpoint, domain_id)

    def forget(self, endpoint: str) -> None:
        self.client.forget(endpoint)

    def repository(self, repository_id: str) -> dict[str, Any] | None:
        """The repository when it is a remote one, else None; an unknown id is NOT_FOUND."""
        repository = self.repositories.get(repository_id)
        return repository if repository["repository_type"] == RepositoryType.REMOTE else None

    def get(self, repository: dict[str, Any], domain_id: str, policy_id: str, include_deleted: bool) -> dict[str, Any]:
        found = self.client.get(_remote(repository), domain_id, policy_id, include_deleted)
        if found is None:
            raise NotFound("Policy", "policy_id", policy_id)
        return _tagged(found, repository)

    def get_anywhere(self, domain_id: str, policy_id: str, include_deleted: bool) -> dict[str, Any]:
        """Every remote repository is asked (in parallel): the answer is the one that has it;
        several -> FAILED_PRECONDITION (ambiguous: pass repository_id); a remote that cannot
        answer -> UNAVAILABLE naming it (the answer would depend on which remotes happen to be up)."""
        remotes = self.repositories.of_type(RepositoryType.REMOTE)
        if not remotes:
            raise NotFound("Policy", "policy_id", policy_id)
        outcomes = self.client.get_each([_remote(r) for r in remotes], domain_id, policy_id, include_deleted)
        found = [
            (repository, outcome)
            for repository, outcome in zip(remotes, outcomes, strict=True)
            if isinstance(outcome, dict)
        ]
        if len(found) > 1:
            holders = ", ".join(repository["repository_id"] for repository, _ in found)
            raise FailedPrecondition(
                f"policy {policy_id} exists in several remote repositories ({holders}); "
                f"pass repository_id to choose one",
                metadata={"policy_id": policy_id, "repository_ids": holders},
            )
        failures = [outcome for outcome in outcomes if isinstance(outcome, PolicyHubError)]
        if failures:
            raise failures[0]
        if found:
            return _tagged(found[0][1], found[0][0])
        raise NotFound("Policy", "policy_id", policy_id)

    def list(
        self, repository: dict[str, Any], domain_id: str, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int]:
        records, total = self.client.list(_remote(repository), domain_id, params)
        return [_tagged(record, repository) for record in records], total

    def stat(self, repository: dict[str, Any], domain_id: str, query: dict[str, Any]) -> tuple[list, int | None]:
        return self.client.stat(_remote(repository), domain_id, query)


def _tagged(record: dict[str, Any], repository: dict[str, Any]) -> dict[str, Any]:
    """A remote policy as we serve it: read-only, in the remote repository."""
    return {**record, "repository_id": repository["repository_id"], "repository_info": repository}


def _remote(repository: dict[str, Any]) -> Remote:
    return repository["endpoint"], repository.get("remote_repository_id", "")
