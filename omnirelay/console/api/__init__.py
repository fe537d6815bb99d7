"""The console's JSON API, one module per area; each exposes ``routes(ctx)``: (method, path, handler, admin)."""
