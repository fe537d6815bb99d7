"""Metrics (``GET /metrics``), OpenTelemetry traces and the JSON access log: fed by the server's wiring and the
pipeline's observation hooks (``pipeline/observe.py``); nothing below the server imports this package."""
