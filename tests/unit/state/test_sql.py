"""state.sql: the statements SQLite and PostgreSQL share differ only in their parameter marks, numbered in the
order of their arguments."""

from __future__ import annotations

import pytest

from omnirelay.state.sql import dollar, key_update, qmark, summary_query, usage_query, usage_where
from omnirelay.state.store import UsageFilter

FULL = UsageFilter(since=1.0, until=2.0, key_id="k1", model="gpt-x", limit=5)


def test_every_filter_field_becomes_a_clause_with_its_arguments_in_order() -> None:
    where, args = usage_where(FULL, dollar)
    assert where == (
        " WHERE created_at >= $1 AND created_at < $2 AND key_id = $3 AND (model_requested = $4 OR model_used = $5)"
    )
    assert args == [1.0, 2.0, "k1", "gpt-x", "gpt-x"]
    assert usage_where(FULL, qmark)[0].count("?") == 5


def test_an_empty_filter_selects_everything() -> None:
    assert usage_where(UsageFilter(), dollar) == ("", [])


def test_usage_query_orders_and_limits() -> None:
    sql, args = usage_query(UsageFilter(key_id="k", limit=3), qmark)
    assert sql.endswith(" FROM usage WHERE key_id = ? ORDER BY created_at, request_id LIMIT 3") and args == ["k"]


def test_summary_groups_only_by_known_dimensions() -> None:
    sql, args = summary_query(UsageFilter(model="m"), ["key_id", "status"], dollar)
    assert sql.startswith("SELECT key_id, status, COUNT(*)")
    assert sql.endswith(
        "WHERE (model_requested = $1 OR model_used = $2) GROUP BY key_id, status ORDER BY key_id, status"
    )
    assert args == ["m", "m"]
    with pytest.raises(ValueError, match="cannot group usage by 'secret_hash'"):
        summary_query(UsageFilter(), ["secret_hash"], dollar)


def test_key_update_encodes_models_and_refuses_other_columns() -> None:
    sets, args = key_update({"models": ["a", "b"], "disabled": 1, "rpm": 10}, dollar)
    assert sets == "SET updated_at = $1, models = $2, disabled = $3, rpm = $4"
    assert args[1:] == ['["a","b"]', True, 10]
    with pytest.raises(ValueError, match="'spent_units' cannot be updated"):
        key_update({"spent_units": 0}, qmark)
