"""server.stored_responses' pure parts: the input_items paging parameters (each bad one a 400 naming it) and the
page taken from the stored items in either order."""

from __future__ import annotations

import msgspec
import pytest

from omnirelay.core.errors import GatewayError
from omnirelay.core.records import StoredResponse
from omnirelay.server.stored_responses import ItemPage, PageQuery, item_page, page_query

ITEMS = [{"id": f"i{n}", "type": "message", "role": "user", "content": f"turn {n}"} for n in range(1, 6)]
ROW = StoredResponse(
    id="resp_1",
    key_id=None,
    created_at=0.0,
    expires_at=1.0,
    response=b"{}",
    input_items=msgspec.json.encode(ITEMS),
    conversation=b"[]",
)


def _ids(page: ItemPage) -> list[str]:
    return [msgspec.json.decode(raw)["id"] for raw in page.data]


def test_the_defaults_are_twenty_descending_from_the_start() -> None:
    assert page_query("") == PageQuery(after=None, limit=20, descending=True)
    assert page_query("limit=100&order=asc&after=i3") == PageQuery(after="i3", limit=100, descending=False)
    assert page_query("include=message.input_image.image_url&include[]=reasoning.encrypted_content") == PageQuery()


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=", "limit"),
        ("limit=1.5", "limit"),
        ("limit=%EF%BC%95", "limit"),  # a full-width digit: str.isdigit says yes, int() would take it
        ("order=DESC", "order"),
        ("include=message.input_image.image_url,bogus", "include"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(query: str, param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        page_query(query)
    assert caught.value.status == 400 and caught.value.param == param and param in caught.value.message


def test_pages_follow_the_order_and_the_cursor() -> None:
    first = item_page(ROW, PageQuery(limit=2))
    assert _ids(first) == ["i5", "i4"] and (first.first_id, first.last_id, first.has_more) == ("i5", "i4", True)
    rest = item_page(ROW, PageQuery(after="i4", limit=10))
    assert _ids(rest) == ["i3", "i2", "i1"] and rest.has_more is False
    asc = item_page(ROW, PageQuery(after="i4", limit=10, descending=False))
    assert _ids(asc) == ["i5"] and asc.last_id == "i5" and asc.has_more is False
    end = item_page(ROW, PageQuery(after="i5", descending=False))
    assert end.data == [] and (end.first_id, end.last_id, end.has_more) == (None, None, False)
    # The stored bytes of each item go out untouched.
    assert bytes(item_page(ROW, PageQuery(limit=1, descending=False)).data[0]) == msgspec.json.encode(ITEMS[0])
    with pytest.raises(GatewayError) as caught:
        item_page(ROW, PageQuery(after="nope"))
    assert caught.value.param == "after"
