"""Explicit wiring: configuration in, a ready application out (constructor injection)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from opentelemetry.trace import Tracer

from policyhub.api.api_key_api import ApiKeyAPI
from policyhub.api.assignment_api import AssignmentAPI
from policyhub.api.audit_api import AuditAPI
from policyhub.api.context import CallerResolver
from policyhub.api.policy_api import PolicyAPI
from policyhub.api.repository_api import RepositoryAPI
from policyhub.api.server_info_api import ServerInfoAPI
from policyhub.config import Config
from policyhub.errors import ConfigError
from policyhub.identity.errors import KeyConfigError
from policyhub.identity.keys import load_verification_keys
from policyhub.identity.tokens import TokenVerifier
from policyhub.managed_policies import load_managed_policies
from policyhub.observability.metrics import Metrics
from policyhub.observability.tracing import make_tracer
from policyhub.manager.api_key_manager import ApiKeyManager
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_manager import AuditManager
from policyhub.manager.database import Database
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.remote.cache import TTLCache
from policyhub.remote.client import RemotePolicyClient
from policyhub.service.api_key_service import ApiKeyService
from policyhub.service.assignment_service import AssignmentService
from policyhub.service.audit_service import AuditService
from policyhub.service.authentication_service import Authenticator
from policyhub.service.authorization_service import AuthorizationService
from policyhub.service.context import utc_now
from policyhub.service.guard import Guard
from policyhub.service.index_cache import IndexCache, index_builder
from policyhub.service.policy_service import PolicyService
from policyhub.service.rate_limit import RateLimiter
from policyhub.service.repository_service import RepositoryService


@dataclass
class Application:
    config: Config
    database: Database
    policy_api: PolicyAPI
    repository_api: RepositoryAPI
    assignment_api: AssignmentAPI
    audit_api: AuditAPI
    api_key_api: ApiKeyAPI
    server_info_api: ServerInfoAPI
    metrics: Metrics
    tracer: Tracer
    remote: RemotePolicyClient


def bootstrap(config: Config) -> Application:
    """Connects to the database, then wires everything on it."""
    metrics = Metrics()
    database = Database(config.mongodb_uri, config.database, config.db_timeout_ms,
                        listeners=(metrics.command_listener(),))
    database.connect()
    return build_application(config, database, metrics)


def build_application(config: Config, database: Database, metrics: Metrics | None = None) -> Application:
    metrics = metrics or Metrics()
    limit = config.page_max_limit
    revisions = RevisionManager()
    policies = PolicyManager(limit)
    assignments = AssignmentManager(limit)
    api_keys = ApiKeyManager(limit)
    indexes = IndexCache(index_builder(policies, assignments), revisions, utc_now)
    metrics.watch_index_cache(indexes)
    guard = Guard(indexes)
    audit_service = AuditService(AuditManager(limit), guard, utc_now)
    remote = _remote_client(config)
    repository_service = RepositoryService(RepositoryManager(limit), guard, audit_service, utc_now, remote)
    policy_service = PolicyService(policies, assignments, repository_service, revisions, audit_service, guard,
                                   utc_now, load_managed_policies(),
                                   timedelta(seconds=config.soft_delete_retention_seconds), remote)
    assignment_service = AssignmentService(assignments, policies, revisions, audit_service, guard, utc_now)
    authorization_service = AuthorizationService(indexes, guard, limit)
    limits = RateLimiter(config.rate_limit_domain_per_second, config.rate_limit_domain_burst,
                         config.auth_failure_per_minute,
                         on_limited=lambda kind: metrics.rate_limited.labels(kind).inc())
    authenticator = None if config.development_mode else Authenticator(_token_verifier(config), api_keys)
    caller = CallerResolver(authenticator, limits)
    page_bytes = config.max_message_bytes
    repository_service.ensure_built_in()
    policy_service.sync_managed()
    return Application(
        config=config,
        database=database,
        policy_api=PolicyAPI(policy_service, caller, page_bytes),
        repository_api=RepositoryAPI(repository_service, caller, page_bytes),
        assignment_api=AssignmentAPI(assignment_service, authorization_service, caller, page_bytes),
        audit_api=AuditAPI(audit_service, caller, page_bytes),
        api_key_api=ApiKeyAPI(ApiKeyService(api_keys, guard, audit_service, utc_now), caller, page_bytes),
        server_info_api=ServerInfoAPI(),
        metrics=metrics,
        tracer=make_tracer(config.tracing_exporter),
        remote=remote,
    )


def _remote_client(config: Config) -> RemotePolicyClient:
    root_certificates = None
    if config.remote_ca_file:
        try:
            with open(config.remote_ca_file, "rb") as handle:
                root_certificates = handle.read()
        except OSError as exc:
            raise ConfigError(f"config key remote_ca_file: cannot read {config.remote_ca_file}: "
                              f"{exc.strerror}") from exc
    return RemotePolicyClient(config.remote_timeout_seconds, config.remote_retries, config.remote_token,
                              TTLCache(config.remote_cache_seconds), root_certificates, config.max_message_bytes)


def _token_verifier(config: Config) -> TokenVerifier:
    try:
        keys = load_verification_keys(config.jwks_file)
    except KeyConfigError as exc:
        raise ConfigError(f"config key jwks_file: {exc}") from exc
    return TokenVerifier(keys, issuer=config.jwt_issuer, audience=config.jwt_audience)
