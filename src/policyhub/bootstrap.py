"""Explicit wiring: configuration in, a ready application out (constructor injection)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from policyhub.api.assignment_api import AssignmentAPI
from policyhub.api.audit_api import AuditAPI
from policyhub.api.policy_api import PolicyAPI
from policyhub.api.repository_api import RepositoryAPI
from policyhub.api.server_info_api import ServerInfoAPI
from policyhub.config import Config
from policyhub.managed_policies import load_managed_policies
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_manager import AuditManager
from policyhub.manager.database import Database
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.service.assignment_service import AssignmentService
from policyhub.service.audit_service import AuditService
from policyhub.service.authorization_service import AuthorizationService
from policyhub.service.context import utc_now
from policyhub.service.policy_service import PolicyService
from policyhub.service.repository_service import RepositoryService


@dataclass
class Application:
    config: Config
    database: Database
    policy_api: PolicyAPI
    repository_api: RepositoryAPI
    assignment_api: AssignmentAPI
    audit_api: AuditAPI
    server_info_api: ServerInfoAPI


def bootstrap(config: Config) -> Application:
    database = Database(config.mongodb_uri, config.database, config.db_timeout_ms)
    database.connect()
    revisions = RevisionManager()
    policies = PolicyManager(config.page_max_limit)
    assignments = AssignmentManager(config.page_max_limit)
    audit_service = AuditService(AuditManager(config.page_max_limit), utc_now)
    repository_service = RepositoryService(RepositoryManager(config.page_max_limit), utc_now)
    policy_service = PolicyService(policies, assignments, repository_service, revisions, audit_service, utc_now,
                                   load_managed_policies(), timedelta(seconds=config.soft_delete_retention_seconds))
    assignment_service = AssignmentService(assignments, policies, revisions, audit_service, utc_now)
    authorization_service = AuthorizationService(policies, assignments, revisions, utc_now, config.page_max_limit)
    repository_service.ensure_built_in()
    policy_service.sync_managed()
    return Application(
        config=config,
        database=database,
        policy_api=PolicyAPI(policy_service),
        repository_api=RepositoryAPI(repository_service),
        assignment_api=AssignmentAPI(assignment_service, authorization_service),
        audit_api=AuditAPI(audit_service),
        server_info_api=ServerInfoAPI(),
    )
