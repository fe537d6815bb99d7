"""Routing: which channels can serve a model name, in what order."""
