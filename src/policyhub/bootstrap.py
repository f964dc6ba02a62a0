"""Explicit wiring: configuration in, an application out (constructor injection).
Building touches no data; `Application.start()` prepares the database and starts the jobs."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import timedelta

from opentelemetry.sdk.trace import TracerProvider

from policyhub.api.api_key_api import ApiKeyAPI
from policyhub.api.assignment_api import AssignmentAPI
from policyhub.api.audit_api import AuditAPI
from policyhub.api.bulk_api import BulkAPI
from policyhub.api.change_api import ChangeAPI
from policyhub.api.context import CallerResolver
from policyhub.api.group_api import GroupAPI
from policyhub.api.policy_api import PolicyAPI
from policyhub.api.repository_api import RepositoryAPI
from policyhub.api.role_api import RoleAPI
from policyhub.api.server_info_api import ServerInfoAPI
from policyhub.config import Config
from policyhub.errors import ConfigError
from policyhub.identity.errors import KeyConfigError
from policyhub.identity.keys import KeySource, load_verification_keys
from policyhub.identity.provider_keys import ProviderKeys
from policyhub.identity.tokens import TokenVerifier
from policyhub.jobs import DatabaseHealth, Periodic, purge_sweep
from policyhub.managed_policies import load_managed_policies
from policyhub.manager.api_key_manager import ApiKeyManager
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_manager import AuditManager
from policyhub.manager.audit_trail import AuditTrail
from policyhub.manager.change_manager import ChangeManager
from policyhub.manager.database import Database, seconds_left
from policyhub.manager.migration_manager import MigrationManager
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.remote_policy_manager import RemotePolicyManager
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.manager.revision_manager import RevisionManager
from policyhub.manager.subject_set_manager import SubjectSetManager
from policyhub.model import GroupDocument, RoleDocument
from policyhub.observability.metrics import Metrics
from policyhub.observability.tracing import make_tracer_provider
from policyhub.remote.cache import TTLCache
from policyhub.remote.client import RemotePolicyClient
from policyhub.service.api_key_service import ApiKeyService
from policyhub.service.assignment_service import AssignmentService
from policyhub.service.assignment_writer import AssignmentWriter
from policyhub.service.audit_service import AuditService
from policyhub.service.authentication_service import Authenticator
from policyhub.service.authorization_service import AuthorizationService
from policyhub.service.bulk_service import BulkService
from policyhub.service.change_feed import Limits
from policyhub.service.change_service import ChangeService, WatchSlots, hole_grace
from policyhub.service.context import utc_now
from policyhub.service.group_service import GroupService
from policyhub.service.guard import Guard
from policyhub.service.index_cache import IndexCache, IndexLoader
from policyhub.service.policy_lifecycle import PolicyLifecycleService
from policyhub.service.policy_service import PolicyService
from policyhub.service.rate_limit import RateLimiter
from policyhub.service.repository_service import RepositoryService
from policyhub.service.resource_listing import ResourceListing
from policyhub.service.role_service import RoleService
from policyhub.service.subject_set_service import adopt_named_sets

# The start-up migration that gives groups and roles only assignments named a document.
ADOPT_NAMED_SETS = "adopt_named_sets"


@dataclass(frozen=True)
class Managers:
    policy: PolicyManager
    assignment: AssignmentManager
    repository: RepositoryManager
    revision: RevisionManager
    audit: AuditManager
    api_key: ApiKeyManager
    group: SubjectSetManager
    role: SubjectSetManager
    change: ChangeManager
    migration: MigrationManager


@dataclass(frozen=True)
class Services:
    policy: PolicyService
    policy_lifecycle: PolicyLifecycleService
    repository: RepositoryService
    assignment: AssignmentService
    authorization: AuthorizationService
    audit: AuditService
    api_key: ApiKeyService
    group: GroupService
    role: RoleService
    change: ChangeService
    bulk: BulkService


@dataclass
class Application:
    """Everything one server process runs on. Several applications may share one database
    (tests do); only the one that is started prepares it and runs the background jobs."""

    config: Config
    database: Database
    managers: Managers
    services: Services
    policy_api: PolicyAPI
    repository_api: RepositoryAPI
    assignment_api: AssignmentAPI
    audit_api: AuditAPI
    api_key_api: ApiKeyAPI
    group_api: GroupAPI
    role_api: RoleAPI
    change_api: ChangeAPI
    bulk_api: BulkAPI
    server_info_api: ServerInfoAPI
    metrics: Metrics
    tracer_provider: TracerProvider
    remote: RemotePolicyClient
    database_health: DatabaseHealth
    # Every process runs these (each one's health follows the database).
    jobs: tuple[Periodic, ...] = field(default=())
    # The purge sweeps: safe from several processes at once (each purge deletes what is expired by
    # one filtered delete), but one process per host is enough (see `start`).
    sweeps: tuple[Periodic, ...] = field(default=())

    def start(self, sweeps: bool = True) -> None:
        """Prepares the database and starts the background jobs; the sweeps only with `sweeps`
        (the workers of one server run them in one of them)."""
        self.prepare()
        for job in (*self.jobs, *self.sweeps) if sweeps else self.jobs:
            job.start()

    def prepare(self) -> None:
        """Creates the built-in repositories, brings the managed policies up to date and gives the
        groups and roles that only assignments name a document (all idempotent, safe from several
        processes at once)."""
        self.services.repository.ensure_built_in()
        self.services.policy.sync_managed()
        # Reads every assignment of every domain: once per installation (each new group or role
        # has had its document since), not at every start of a server over a large database.
        if not self.managers.migration.done(ADOPT_NAMED_SETS):
            adopt_named_sets(self.managers.assignment, [self.services.group, self.services.role])
            self.managers.migration.record(ADOPT_NAMED_SETS, utc_now())

    def close(self) -> None:
        for job in (*self.jobs, *self.sweeps):
            job.stop()
        self.remote.close()
        self.database.close()
        self.metrics.close()
        # Sends the spans still batched.
        self.tracer_provider.shutdown()


def bootstrap(config: Config) -> Application:
    """Connects to the database, then wires everything on it."""
    metrics = Metrics()
    database = Database(
        config.mongodb_uri,
        config.database,
        config.db_timeout_ms,
        config.db_query_timeout_ms,
        build_timeout_ms=config.index_build_timeout_ms,
        listeners=(metrics.command_listener(),),
    )
    database.connect()
    return build_application(config, database, metrics)


def build_application(config: Config, database: Database, metrics: Metrics | None = None) -> Application:
    """Wires an application on a connected database without touching its data."""
    metrics = metrics or Metrics()
    limit = config.page_max_limit
    revisions = RevisionManager(timedelta(seconds=config.change_retention_seconds))
    policies = PolicyManager(limit)
    assignments = AssignmentManager(limit)
    api_keys = ApiKeyManager(limit)
    audits = AuditManager(limit)
    repositories = RepositoryManager(limit)
    groups = SubjectSetManager(GroupDocument, "Group", "group_id", limit)
    roles = SubjectSetManager(RoleDocument, "Role", "role_id", limit)
    changes = ChangeManager()
    loader = IndexLoader(policies, assignments, revisions, whole_read=database.bounded_build)
    indexes = IndexCache(
        loader.build,
        revisions,
        utc_now,
        max_staleness=config.max_staleness_seconds,
        advance=loader.advance,
        seconds_left=seconds_left,
    )
    metrics.watch_index_cache(indexes)
    guard = Guard(indexes, utc_now)
    audit = AuditTrail(audits, utc_now)
    remote = _remote_client(config)
    remote_policies = RemotePolicyManager(remote, repositories)
    repository_service = RepositoryService(repositories, guard, audit, utc_now, remote_policies)
    policy_service = PolicyService(
        policies, remote_policies, assignments, revisions, audit, guard, utc_now, load_managed_policies()
    )
    policy_lifecycle = PolicyLifecycleService(
        policies, assignments, revisions, audit, guard, utc_now, timedelta(seconds=config.soft_delete_retention_seconds)
    )
    writer = AssignmentWriter(assignments, policies, {"GROUP": groups, "ROLE": roles}, revisions, audit, guard, utc_now)
    assignment_service = AssignmentService(assignments, writer, guard)
    audit_service = AuditService(audits, guard)
    listing = ResourceListing(indexes, guard, limit, utc_now)
    authorization_service = AuthorizationService(indexes, guard, listing, limit, utc_now)
    set_parts = (assignments, writer, indexes, revisions, audit, guard, utc_now)
    group_service = GroupService(groups, *set_parts, listing=listing)
    role_service = RoleService(roles, *set_parts)
    retention = timedelta(seconds=config.soft_delete_retention_seconds)
    bulk_service = BulkService(policies, groups, roles, assignments, revisions, audit, guard, utc_now, retention)
    limits = RateLimiter(
        config.rate_limit_domain_per_second,
        config.rate_limit_domain_burst,
        config.auth_failure_per_minute,
        on_limited=lambda kind: metrics.rate_limited.labels(kind).inc(),
    )
    keys = _verification_keys(config)
    authenticator = None
    if keys is not None:
        verifier = TokenVerifier(keys, issuer=config.jwt_issuer, audience=config.jwt_audience)
        authenticator = Authenticator(verifier, api_keys)
    caller = CallerResolver(authenticator, limits, config.public_domain_id)
    page_bytes = config.max_message_bytes
    api_key_service = ApiKeyService(api_keys, guard, audit, utc_now)
    change_service = ChangeService(
        changes,
        revisions,
        guard,
        utc_now,
        limit,
        Limits(grace=hole_grace(config.db_timeout_ms), retention=config.change_retention_seconds),
        WatchSlots.for_workers(config.max_workers),
    )
    services = Services(
        policy=policy_service,
        policy_lifecycle=policy_lifecycle,
        repository=repository_service,
        assignment=assignment_service,
        authorization=authorization_service,
        audit=audit_service,
        api_key=api_key_service,
        group=group_service,
        role=role_service,
        change=change_service,
        bulk=bulk_service,
    )
    database_health = DatabaseHealth(database)
    return Application(
        config=config,
        database=database,
        managers=Managers(
            policy=policies,
            assignment=assignments,
            repository=repositories,
            revision=revisions,
            audit=audits,
            api_key=api_keys,
            group=groups,
            role=roles,
            change=changes,
            migration=MigrationManager(),
        ),
        services=services,
        policy_api=PolicyAPI(policy_service, policy_lifecycle, caller, page_bytes),
        repository_api=RepositoryAPI(repository_service, caller, page_bytes),
        assignment_api=AssignmentAPI(assignment_service, authorization_service, caller, page_bytes),
        audit_api=AuditAPI(audit_service, caller, page_bytes),
        api_key_api=ApiKeyAPI(api_key_service, caller, page_bytes),
        group_api=GroupAPI(group_service, caller, page_bytes),
        role_api=RoleAPI(role_service, caller, page_bytes),
        change_api=ChangeAPI(change_service, caller, database.bounded, page_bytes),
        bulk_api=BulkAPI(bulk_service, caller, page_bytes, config.import_max_items, config.import_max_bytes),
        server_info_api=ServerInfoAPI(),
        metrics=metrics,
        tracer_provider=make_tracer_provider(config),
        remote=remote,
        database_health=database_health,
        jobs=(
            Periodic("db-health", config.health_interval_seconds, database_health.check),
            *_key_refresh(config, keys),
        ),
        sweeps=(
            Periodic(
                "purge-sweep",
                config.purge_interval_seconds,
                purge_sweep(
                    {
                        "soft-deleted policies": services.policy_lifecycle.purge_expired,
                        "change records": services.change.purge_expired,
                    }
                ),
            ),
        ),
    )


def _remote_client(config: Config) -> RemotePolicyClient:
    root_certificates = None
    if config.remote_ca_file:
        try:
            with open(config.remote_ca_file, "rb") as handle:
                root_certificates = handle.read()
        except OSError as exc:
            raise ConfigError(
                f"config key remote_ca_file: cannot read {config.remote_ca_file}: {exc.strerror}"
            ) from exc
    return RemotePolicyClient(
        config.remote_timeout_seconds,
        config.remote_retries,
        config.remote_token,
        TTLCache(config.remote_cache_seconds),
        root_certificates,
        config.max_message_bytes,
    )


def _verification_keys(config: Config) -> KeySource | None:
    """The configured keys (None: development mode). Those of a jwks_uri are fetched now."""
    if config.jwks_file:
        try:
            return load_verification_keys(config.jwks_file)
        except KeyConfigError as exc:
            raise ConfigError(f"config key jwks_file: {exc}") from exc
    if not config.jwks_uri:
        return None
    try:
        tls = ssl.create_default_context(cafile=config.jwks_ca_file or None)
    except OSError as exc:  # ssl.SSLError too: not a PEM bundle of certificates
        raise ConfigError(f"config key jwks_ca_file: cannot load {config.jwks_ca_file}: {exc.strerror or exc}") from exc
    try:
        return ProviderKeys(config.jwks_uri, tls, config.jwks_refresh_min_seconds)
    except KeyConfigError as exc:
        raise ConfigError(f"config key jwks_uri: {exc}") from exc


def _key_refresh(config: Config, keys: KeySource | None) -> tuple[Periodic, ...]:
    if not isinstance(keys, ProviderKeys):
        return ()
    return (Periodic("jwks-refresh", config.jwks_refresh_seconds, keys.refresh),)
