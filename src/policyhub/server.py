"""The gRPC server: our services, health, reflection; graceful shutdown. It only serves: the
application it serves runs the background jobs (see `Application.start`)."""

from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from policyhub._gen.spaceone.api.core.v1 import server_info_pb2, server_info_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import (
    api_key_pb2,
    api_key_pb2_grpc,
    assignment_pb2,
    assignment_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    repository_pb2,
    repository_pb2_grpc,
)
from policyhub.api.deadline import DeadlineInterceptor
from policyhub.api.errors import ErrorInterceptor
from policyhub.bootstrap import Application
from policyhub.observability.interceptor import ObservabilityInterceptor

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    policy_pb2.DESCRIPTOR.services_by_name["Policy"].full_name,
    repository_pb2.DESCRIPTOR.services_by_name["Repository"].full_name,
    assignment_pb2.DESCRIPTOR.services_by_name["Assignment"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["Audit"].full_name,
    api_key_pb2.DESCRIPTOR.services_by_name["ApiKey"].full_name,
    server_info_pb2.DESCRIPTOR.services_by_name["ServerInfo"].full_name,
)


class PolicyHubServer:
    def __init__(self, app: Application):
        self.app = app
        config = app.config
        self.health = health.HealthServicer()
        self.grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="rpc"),
            # Outermost first: the observability interceptor sees the status the error interceptor sets,
            # and that one translates what fails under the deadline.
            interceptors=[
                ObservabilityInterceptor(app.metrics, app.tracer),
                ErrorInterceptor(),
                DeadlineInterceptor(app.database),
            ],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        policy_pb2_grpc.add_PolicyServicer_to_server(app.policy_api, self.grpc_server)
        repository_pb2_grpc.add_RepositoryServicer_to_server(app.repository_api, self.grpc_server)
        assignment_pb2_grpc.add_AssignmentServicer_to_server(app.assignment_api, self.grpc_server)
        audit_pb2_grpc.add_AuditServicer_to_server(app.audit_api, self.grpc_server)
        api_key_pb2_grpc.add_ApiKeyServicer_to_server(app.api_key_api, self.grpc_server)
        server_info_pb2_grpc.add_ServerInfoServicer_to_server(app.server_info_api, self.grpc_server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.grpc_server,
        )
        self.port = self.grpc_server.add_insecure_port(f"{config.host}:{config.port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {config.host}:{config.port}")
        self._stopped = threading.Event()
        self.serving: bool | None = None
        # Health follows the database: NOT_SERVING while it is unreachable.
        app.database_health.subscribe(self._set_serving)

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
        self._set_serving(self.app.database_health.reachable)
        log.info("policyhub serving on %s:%d", self.app.config.host, self.port)

    def stop(self, grace: float | None = None) -> None:
        """Stops taking new calls; in-flight calls get `grace` seconds to finish."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        grace = self.app.config.shutdown_grace_seconds if grace is None else grace
        self.grpc_server.stop(grace).wait()
