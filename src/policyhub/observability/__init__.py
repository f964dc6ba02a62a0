"""Metrics (Prometheus), tracing (OpenTelemetry) and structured JSON logs."""
