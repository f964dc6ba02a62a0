"""`python -m policyhub [--config FILE]`: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from policyhub.bootstrap import bootstrap
from policyhub.config import load_config
from policyhub.errors import ConfigError, PolicyHubError
from policyhub.observability import logs
from policyhub.server import PolicyHubServer

log = logging.getLogger("policyhub")
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="policyhub", description="policyhub gRPC server")
    parser.add_argument("--config", help="YAML configuration file (or POLICYHUB_CONFIG)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"policyhub: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, config.log_format)
    if config.embedded_store:
        log.warning("no mongodb_uri configured: using the EMBEDDED IN-MEMORY store; data is lost at exit")
    if config.development_mode:
        log.warning(
            "!!! DEVELOPMENT MODE: no jwks_file or jwks_uri configured, so NOBODY IS AUTHENTICATED: every caller "
            "acts as SYSTEM for the domain in its request. Never run this way in production. !!!"
        )
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        app = bootstrap(config)
        server = PolicyHubServer(app)
        app.start()
    except (ConfigError, PolicyHubError, OSError) as exc:
        print(f"policyhub: cannot start: {exc}", file=sys.stderr)
        return 1
    server.start()
    # Signals were blocked before any thread started (all threads inherit the mask), so
    # they wait here for the main thread; a second signal during shutdown cannot re-enter.
    signal.sigwait(STOP_SIGNALS)
    # In-flight calls finish within the grace period; new ones are refused.
    server.stop()
    app.close()
    log.info("policyhub stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
