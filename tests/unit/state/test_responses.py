"""state.responses' pure parts and its setting: who may read a row, the size cap, and the retention setting's
default and checks."""

from __future__ import annotations

import math
from typing import Any

import pytest

from omnirelay.config import ConfigError, parse_config
from omnirelay.core.records import DEFAULT_RESPONSE_RETENTION_S, StoredResponse
from omnirelay.state.responses import (
    MAX_STORED_BYTES,
    too_large_to_store,
    unreadable_id,
    visible_to,
)


def _row(key_id: str | None, size: int = 0) -> StoredResponse:
    return StoredResponse(
        id="resp_1",
        key_id=key_id,
        created_at=0.0,
        expires_at=100.0,
        response=b"{}",
        input_items=b"[]",
        conversation=b"x" * size,
    )


def test_only_the_owner_sees_a_row_and_only_until_it_expires() -> None:
    assert visible_to(_row("k1"), "k1", 99.0)
    assert not visible_to(_row("k1"), "k1", 100.0)
    assert not visible_to(_row("k1"), "k2", 0.0) and not visible_to(_row("k1"), None, 0.0)
    assert visible_to(_row(None), None, 0.0) and not visible_to(_row(None), "k1", 0.0)


def test_the_size_cap_counts_every_stored_document() -> None:
    assert not too_large_to_store(_row(None, MAX_STORED_BYTES - 4))  # + "{}" + "[]" = exactly the cap
    assert too_large_to_store(_row(None, MAX_STORED_BYTES - 3))


def test_ids_no_row_can_have() -> None:
    assert unreadable_id("") and unreadable_id("resp_\x00") and unreadable_id("r" * 257)
    assert not unreadable_id("resp_0123")


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan])
def test_the_retention_must_be_a_positive_finite_duration(value: float) -> None:
    config: dict[str, Any] = {"state": {"responses_retention_s": value}}
    with pytest.raises(ConfigError, match=r"state\.responses_retention_s"):
        parse_config(config)


def test_the_retention_defaults_to_thirty_days() -> None:
    assert parse_config({}).state.responses_retention_s == DEFAULT_RESPONSE_RETENTION_S == 30 * 86400
    assert parse_config({"state": {"responses_retention_s": 3600}}).state.responses_retention_s == 3600
