"""Container health check: a gRPC health Check (grpc.health.v1) against the local server.

    python healthcheck.py [PORT]

Asks 127.0.0.1:PORT (PORT from the argument, else POLICYHUB_PORT unless it is a Kubernetes
service link such as tcp://10.0.0.1:50051, else 50051) for the
overall health ("" service) with a 2 s deadline. Exit 0 only when the answer is SERVING;
1 for any other status, an error or a timeout (a server in graceful shutdown answers
NOT_SERVING). Needs only grpcio and grpcio-health-checking, which the image has; the image
has no grpc_health_probe binary.
"""
from __future__ import annotations

import os
import sys

DEADLINE_SECONDS = 2.0
DEFAULT_PORT = 50051


def port_from(argv: list[str]) -> int:
    raw = argv[1] if len(argv) > 1 else os.environ.get("POLICYHUB_PORT", str(DEFAULT_PORT))
    if len(argv) == 1 and "://" in raw:
        # Kubernetes' service link of a Service named policyhub (tcp://<cluster ip>:<port>), not a
        # port setting: the server ignores it too.
        raw = str(DEFAULT_PORT)
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError(f"{raw} is not a TCP port")
    return port


def check(port: int, service: str = "") -> str:
    """The serving status name, e.g. SERVING or NOT_SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE_SECONDS)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str]) -> int:
    try:
        port = port_from(argv)
    except ValueError as exc:
        print(f"healthcheck: bad port: {exc}", file=sys.stderr)
        return 2
    try:
        status = check(port)
    except Exception as exc:  # grpc.RpcError (UNAVAILABLE, DEADLINE_EXCEEDED, ...) or anything else
        code = getattr(exc, "code", None)
        reason = code().name if callable(code) else type(exc).__name__
        print(f"healthcheck: 127.0.0.1:{port} unhealthy: {reason}", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(f"healthcheck: 127.0.0.1:{port} is {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
