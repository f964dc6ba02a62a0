"""Explicit wiring: configuration in, a ready application out (constructor injection)."""
from __future__ import annotations

from dataclasses import dataclass

from policyhub.api.policy_api import PolicyAPI
from policyhub.api.repository_api import RepositoryAPI
from policyhub.api.server_info_api import ServerInfoAPI
from policyhub.config import Config
from policyhub.managed_policies import load_managed_policies
from policyhub.manager.database import Database
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.service.context import utc_now
from policyhub.service.policy_service import PolicyService
from policyhub.service.repository_service import RepositoryService


@dataclass
class Application:
    config: Config
    database: Database
    policy_api: PolicyAPI
    repository_api: RepositoryAPI
    server_info_api: ServerInfoAPI


def bootstrap(config: Config) -> Application:
    database = Database(config.mongodb_uri, config.database, config.db_timeout_ms)
    database.connect()
    repository_service = RepositoryService(RepositoryManager(config.page_max_limit), utc_now)
    policy_service = PolicyService(PolicyManager(config.page_max_limit), repository_service, utc_now,
                                   load_managed_policies())
    repository_service.ensure_built_in()
    policy_service.sync_managed()
    return Application(
        config=config,
        database=database,
        policy_api=PolicyAPI(policy_service),
        repository_api=RepositoryAPI(repository_service),
        server_info_api=ServerInfoAPI(),
    )
