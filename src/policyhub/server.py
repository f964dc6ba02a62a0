"""The gRPC server: our services, health, reflection; graceful shutdown. It only serves: the
application it serves runs the background jobs (see `Application.start`).

With `spaceone_port`, a second listener serves SpaceONE's own client (spaceone-core's gRPC
client imports `<package>.<proto file>_pb2_grpc` from the installed spaceone-api for every
service reflection lists, so it cannot connect to a server that lists services spaceone-api
does not have): the same Policy, Repository, ServerInfo and Health servicers behind the same
interceptors, reflection listing only SPACEONE_SERVICE_NAMES, and anonymous public reads (see
policyhub.api.context). The main port keeps full reflection."""

from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from policyhub._gen.spaceone.api.core.v1 import server_info_pb2, server_info_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import (
    api_key_pb2,
    api_key_pb2_grpc,
    assignment_pb2,
    assignment_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    bulk_pb2,
    bulk_pb2_grpc,
    change_pb2,
    change_pb2_grpc,
    group_pb2,
    group_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    repository_pb2,
    repository_pb2_grpc,
    role_pb2,
    role_pb2_grpc,
)
from policyhub.api.deadline import DeadlineInterceptor
from policyhub.api.errors import ErrorInterceptor
from policyhub.api.listener import SpaceOneListenerInterceptor
from policyhub.api.reflection import DESCRIPTORS as REFLECTION_DESCRIPTORS
from policyhub.api.reflection import V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME, enable_reflection
from policyhub.api.spaceone_view import spaceone_pool
from policyhub.bootstrap import Application
from policyhub.observability.interceptor import telemetry_interceptors
from policyhub.workers import refuse_port_in_use

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    policy_pb2.DESCRIPTOR.services_by_name["Policy"].full_name,
    repository_pb2.DESCRIPTOR.services_by_name["Repository"].full_name,
    assignment_pb2.DESCRIPTOR.services_by_name["Assignment"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["Audit"].full_name,
    api_key_pb2.DESCRIPTOR.services_by_name["ApiKey"].full_name,
    group_pb2.DESCRIPTOR.services_by_name["Group"].full_name,
    role_pb2.DESCRIPTOR.services_by_name["Role"].full_name,
    change_pb2.DESCRIPTOR.services_by_name["Change"].full_name,
    bulk_pb2.DESCRIPTOR.services_by_name["Bulk"].full_name,
    server_info_pb2.DESCRIPTOR.services_by_name["ServerInfo"].full_name,
)
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# What spaceone-api 1.12 has stubs for.
SPACEONE_SERVICE_NAMES = (
    policy_pb2.DESCRIPTOR.services_by_name["Policy"].full_name,
    repository_pb2.DESCRIPTOR.services_by_name["Repository"].full_name,
    server_info_pb2.DESCRIPTOR.services_by_name["ServerInfo"].full_name,
)


class PolicyHubServer:
    def __init__(self, app: Application, reuse_port: bool = False):
        """`reuse_port`: bind with SO_REUSEPORT, so the workers of one server share its ports (off,
        a port in use is an error at start instead of a silent share)."""
        self.app = app
        self.reuse_port = reuse_port
        config = app.config
        self.health = health.HealthServicer()
        # Set when stop() begins: this server's watches end at once (see ChangeAPI.serving).
        self._stopped = threading.Event()
        self.grpc_server = self._grpc_server("rpc")
        assignment_pb2_grpc.add_AssignmentServicer_to_server(app.assignment_api, self.grpc_server)
        audit_pb2_grpc.add_AuditServicer_to_server(app.audit_api, self.grpc_server)
        api_key_pb2_grpc.add_ApiKeyServicer_to_server(app.api_key_api, self.grpc_server)
        group_pb2_grpc.add_GroupServicer_to_server(app.group_api, self.grpc_server)
        role_pb2_grpc.add_RoleServicer_to_server(app.role_api, self.grpc_server)
        change_pb2_grpc.add_ChangeServicer_to_server(app.change_api.serving(self._stopped), self.grpc_server)
        bulk_pb2_grpc.add_BulkServicer_to_server(app.bulk_api, self.grpc_server)
        self._add_common(
            self.grpc_server, (*SERVICE_NAMES, HEALTH_SERVICE_NAME, V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME), pool=None
        )
        self.port = self._listen(self.grpc_server, config.port)
        self.spaceone_server: grpc.Server | None = None
        self.spaceone_port = 0
        if config.spaceone_port:
            self.spaceone_server = self._grpc_server("spaceone-rpc", SpaceOneListenerInterceptor())
            # spaceone-core imports the stubs of every service listed, and only v1alpha's exist
            # where it runs: v1 is served here but not listed.
            self._add_common(
                self.spaceone_server,
                (*SPACEONE_SERVICE_NAMES, HEALTH_SERVICE_NAME, V1ALPHA_SERVICE_NAME),
                pool=spaceone_pool(
                    policy_pb2.DESCRIPTOR,
                    repository_pb2.DESCRIPTOR,
                    server_info_pb2.DESCRIPTOR,
                    health_pb2.DESCRIPTOR,
                    *REFLECTION_DESCRIPTORS,
                ),
            )
            self.spaceone_port = self._listen(self.spaceone_server, config.spaceone_port)
        self.serving: bool | None = None
        # Health follows the database: NOT_SERVING while it is unreachable.
        app.database_health.subscribe(self._set_serving)

    def _grpc_server(self, thread_name_prefix: str, *innermost: grpc.ServerInterceptor) -> grpc.Server:
        config = self.app.config
        return grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix=thread_name_prefix),
            # Outermost first: the telemetry interceptors see the status the error interceptor sets,
            # and that one translates what fails under the deadline.
            interceptors=[
                *telemetry_interceptors(self.app.metrics, self.app.tracer_provider),
                ErrorInterceptor(),
                DeadlineInterceptor(
                    self.app.database.bounded, self.app.database.bounded_query, self.app.database.bounded_by_deadline
                ),
                *innermost,
            ],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", int(self.reuse_port)),
            ],
        )

    def _add_common(
        self, server: grpc.Server, reflected: tuple[str, ...], pool: descriptor_pool.DescriptorPool | None
    ) -> None:
        """The servicers both listeners serve, and reflection (v1 and v1alpha) listing `reflected`,
        described by `pool` (None: the descriptors we are built with)."""
        app = self.app
        policy_pb2_grpc.add_PolicyServicer_to_server(app.policy_api, server)
        repository_pb2_grpc.add_RepositoryServicer_to_server(app.repository_api, server)
        server_info_pb2_grpc.add_ServerInfoServicer_to_server(app.server_info_api, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection(reflected, server, pool)

    def _listen(self, server: grpc.Server, port: int) -> int:
        """Binds `port` (0: a free one); one in use is an OSError naming it. Probed first, unless
        the port is shared on purpose, so gRPC's own bind never fails (it would log its error too)."""
        host = self.app.config.host
        if port and not self.reuse_port:
            refuse_port_in_use(host, port)
        try:
            bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        return bound

    def _set_serving(self, serving: bool) -> None:
        if serving == self.serving:
            return
        self.serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, status)
        log.log(
            logging.INFO if serving else logging.ERROR,
            "database %s: health %s",
            "reachable" if serving else "UNREACHABLE",
            "SERVING" if serving else "NOT_SERVING",
        )

    def start(self) -> None:
        self.grpc_server.start()
        if self.spaceone_server is not None:
            self.spaceone_server.start()
        self._set_serving(self.app.database_health.reachable)
        log.info("policyhub serving on %s:%d", self.app.config.host, self.port)
        if self.spaceone_server is not None:
            log.info("SpaceONE listener on %s:%d", self.app.config.host, self.spaceone_port)

    def stop(self, grace: float | None = None) -> None:
        """Stops taking new calls; in-flight calls get `grace` seconds to finish."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        grace = self.app.config.shutdown_grace_seconds if grace is None else grace
        stopping = [self.grpc_server.stop(grace)]
        if self.spaceone_server is not None:
            stopping.append(self.spaceone_server.stop(grace))
        for event in stopping:
            event.wait()
