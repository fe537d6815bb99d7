"""Benchmark harness: omnirelay against LiteLLM's proxy and nginx on one fast mock upstream."""
