"""The HTTP server: ASGI app, relay orchestration and the upstream executor (all the gateway's I/O)."""
