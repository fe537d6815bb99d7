"""The token estimate of text, before any upstream has counted it."""

from __future__ import annotations

from omnirelay.core.estimate import estimate_tokens_of


def test_text_estimate_counts_non_ascii_text_higher() -> None:
    assert estimate_tokens_of("hello world!") == 3
    assert estimate_tokens_of("") == 0
    assert estimate_tokens_of("日本語のテキスト") == 2 + 8  # 8 characters of 3 bytes: 1.25 per character
    assert estimate_tokens_of("\ud800") >= 1  # a lone surrogate (from JSON \ud800) does not raise
