"""`policyhub [serve] [--config FILE]` (or `python -m policyhub`): serve until SIGTERM/SIGINT;
with `workers` > 1, as the parent of that many server processes (see policyhub.workers).
`policyhub policy|assign|check|export|import …`: the client subcommands (policyhub.cli).
`policyhub --version`: the installed package's version."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from importlib import metadata

from policyhub import cli
from policyhub.bootstrap import Application, bootstrap
from policyhub.config import Config, load_config
from policyhub.errors import ConfigError, PolicyHubError
from policyhub.observability import logs
from policyhub.server import PolicyHubServer
from policyhub.workers import STOP_SIGNALS, Supervisor, WorkerLink

log = logging.getLogger("policyhub")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.run is not None:
        return cli.run(args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"policyhub: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, config.log_format)
    if args.worker is not None:
        return serve(config, WorkerLink(args.worker, args.link_fd))
    if config.embedded_store:
        log.warning("no mongodb_uri configured: using the EMBEDDED IN-MEMORY store; data is lost at exit")
    if config.development_mode:
        log.warning(
            "!!! DEVELOPMENT MODE: no jwks_file or jwks_uri configured, so NOBODY IS AUTHENTICATED: every caller "
            "acts as SYSTEM for the domain in its request. Never run this way in production. !!!"
        )
    if config.workers > 1:
        return Supervisor(config, ["--config", args.config] if args.config else []).run()
    return serve(config, None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policyhub",
        description="policyhub: the gRPC server (no subcommand, or serve) and a command-line client of it.",
        epilog="Client exit codes: 0 done (check: ALLOW), 1 DENY (or an import dry run refusing items), "
        "2 usage error, 3 CONDITIONAL, 4 refused by the server, 5 no answer (UNAVAILABLE, DEADLINE_EXCEEDED).",
    )
    parser.add_argument("--version", action="version", version=f"policyhub {metadata.version('policyhub')}")
    parser.add_argument("--config", help="YAML configuration file of the server (or POLICYHUB_CONFIG)")
    # Set by the parent of several workers on the processes it starts.
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--link-fd", type=int, help=argparse.SUPPRESS)
    cli.add_client_options(parser, defaults=True)
    parser.set_defaults(run=None)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    serve_command = subparsers.add_parser("serve", help="serve (the default without a command)")
    serve_command.add_argument("--config", default=argparse.SUPPRESS, help="YAML configuration file")
    cli.add_subcommands(subparsers)
    return parser


def serve(config: Config, worker: WorkerLink | None) -> int:
    """One server process: alone, or the worker of a parent (`worker`)."""
    # Exactly the stop signals (a worker inherits the parent's mask through exec, SIGCHLD included).
    signal.pthread_sigmask(signal.SIG_SETMASK, STOP_SIGNALS)
    if worker is not None:
        worker.stop_with_parent()
    try:
        app = bootstrap(config)
        server = PolicyHubServer(app, reuse_port=worker is not None)
        app.start(sweeps=worker is None or worker.slot == 0)
        metrics_port = _serve_metrics(app, config, worker)
    except PolicyHubError as exc:
        print(f"policyhub: cannot start: {exc.message}", file=sys.stderr)
        return 1
    except (ConfigError, OSError) as exc:
        print(f"policyhub: cannot start: {exc}", file=sys.stderr)
        return 1
    server.start()
    if worker is not None:
        worker.ready(metrics_port)
    # Signals were blocked before any thread started (all threads inherit the mask), so
    # they wait here for the main thread; a second signal during shutdown cannot re-enter.
    signal.sigwait(STOP_SIGNALS)
    # In-flight calls finish within the grace period; new ones are refused.
    server.stop()
    app.close()
    log.info("policyhub stopped" if worker is None else f"worker {worker.slot} stopped")
    return 0


def _serve_metrics(app: Application, config: Config, worker: WorkerLink | None) -> int:
    """A worker serves its registry on a free loopback port that its parent reads (the parent
    serves metrics_port); a server alone serves metrics_port itself. 0: metrics are off."""
    if not config.metrics_port:
        return 0
    if worker is not None:
        return app.metrics.serve("127.0.0.1", 0)
    app.metrics.serve(config.host, config.metrics_port)
    log.info("metrics on http://%s:%d/metrics", config.host, config.metrics_port)
    return config.metrics_port


if __name__ == "__main__":
    sys.exit(main())
