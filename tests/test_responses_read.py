"""The read side of the Responses API through the running gateway with the official openai SDK
(``client.responses.retrieve`` / ``delete`` / ``input_items.list``), on SQLite and on PostgreSQL: responses are
written through the store beforehand (as ``POST /v1/responses`` stores them), each key sees only its own (another
key gets OpenAI's 404), paging follows after/limit/order, bad parameters get a 400 naming the parameter, and with
the gateway open a caller without a key sees only the responses stored without one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import openai
import pytest

from omnirelay.core.records import StoredResponse
from omnirelay.state.backends import open_store
from tests.gateway import Gateway
from tests.mocks.server import MockUpstreams
from tests.state_helpers import BACKENDS, Admin, Backend, backend, start_gateway, state_config

DAY = 86400.0
ITEMS = 5


class Env:
    def __init__(self, gw: Gateway, b: Backend) -> None:
        self.gw = gw
        self.backend = b

    def oai(self, secret: str | None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=secret or "", max_retries=0, timeout=30)

    def http(self, secret: str | None) -> httpx.Client:
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.gw.url, headers=headers, timeout=30)

    def put(self, *rows: StoredResponse) -> None:
        async def write() -> None:
            store = open_store(self.backend.database_url)
            await store.open()
            try:
                for row in rows:
                    await store.responses.put(row)
            finally:
                await store.close()

        asyncio.run(write())


def response_object(response_id: str, text: str) -> dict[str, Any]:
    """A Responses object as POST /v1/responses returns it (the fields the SDK reads)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1_764_000_000,
        "status": "completed",
        "model": "gpt-4.1",
        "output": [
            {
                "type": "message",
                "id": f"msg_out_{response_id}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 3,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        },
    }


def input_item(response_id: str, n: int) -> dict[str, Any]:
    return {
        "id": f"msg_{response_id}_{n}",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": f"turn {n}"}],
    }


def stored(key_id: str | None, *, text: str = "stored answer", expires_in: float = DAY) -> StoredResponse:
    response_id = "resp_" + uuid.uuid4().hex
    items = [input_item(response_id, n) for n in range(1, ITEMS + 1)]
    now = time.time()
    return StoredResponse(
        id=response_id,
        key_id=key_id,
        created_at=now,
        expires_at=now + expires_in,
        response=msgspec.json.encode(response_object(response_id, text)),
        input_items=msgspec.json.encode(items),
        conversation=msgspec.json.encode(items),
    )


def item_ids(r: StoredResponse, *ns: int) -> list[str]:
    return [f"msg_{r.id}_{n}" for n in ns]


@pytest.fixture(scope="module", params=BACKENDS)
def env(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp(f"responses-{request.param}")
    with backend(request.param, workdir) as b:
        gw = start_gateway(state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))), workdir, b)
        try:
            yield Env(gw, b)
        finally:
            gw.stop()


@pytest.fixture(scope="module")
def keys(env: Env) -> dict[str, tuple[str, str]]:
    """Two keys: name -> (key id, secret)."""
    admin = Admin(env.gw.url)
    return {name: admin.create_key(name=name) for name in ("alice", "bob")}


def assert_not_found(exc: openai.NotFoundError, response_id: str) -> None:
    assert exc.status_code == 404
    assert exc.body == {
        "message": f"Response with id '{response_id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_the_owner_retrieves_the_stored_response_and_another_key_gets_404(
    env: Env, keys: dict[str, tuple[str, str]]
) -> None:
    (alice_id, alice), (_, bob) = keys["alice"], keys["bob"]
    row = stored(alice_id, text="the stored answer")
    env.put(row)
    got = env.oai(alice).responses.retrieve(row.id)
    assert got.id == row.id and got.status == "completed" and got.output_text == "the stored answer"
    assert got.usage is not None and got.usage.total_tokens == 15
    raw = env.http(alice).get(f"/v1/responses/{row.id}")
    assert raw.status_code == 200 and raw.content == row.response  # exactly as it was returned
    assert env.http(alice).get(f"/responses/{row.id}").content == row.response  # the path without /v1 too
    with pytest.raises(openai.NotFoundError) as bob_sees:
        env.oai(bob).responses.retrieve(row.id)
    assert_not_found(bob_sees.value, row.id)
    with pytest.raises(openai.NotFoundError) as missing:
        env.oai(alice).responses.retrieve("resp_nothing_here")
    assert_not_found(missing.value, "resp_nothing_here")
    with pytest.raises(openai.AuthenticationError):
        env.oai("sk-omni-not-a-key").responses.retrieve(row.id)
    assert env.http(None).get(f"/v1/responses/{row.id}").status_code == 401  # the gateway is closed: keys exist


def test_an_expired_response_is_404(env: Env, keys: dict[str, tuple[str, str]]) -> None:
    alice_id, alice = keys["alice"]
    row = stored(alice_id, expires_in=-1.0)
    env.put(row)
    with pytest.raises(openai.NotFoundError) as exc:
        env.oai(alice).responses.retrieve(row.id)
    assert_not_found(exc.value, row.id)
    with pytest.raises(openai.NotFoundError):
        env.oai(alice).responses.input_items.list(row.id)


def test_only_the_owner_deletes_and_a_deleted_response_is_gone(env: Env, keys: dict[str, tuple[str, str]]) -> None:
    (alice_id, alice), (_, bob) = keys["alice"], keys["bob"]
    row = stored(alice_id)
    env.put(row)
    with pytest.raises(openai.NotFoundError) as bob_deletes:
        env.oai(bob).responses.delete(row.id)
    assert_not_found(bob_deletes.value, row.id)
    assert env.oai(alice).responses.retrieve(row.id).id == row.id  # still there
    raw = env.oai(alice).responses.with_raw_response.delete(row.id)
    assert raw.http_request.method == "DELETE" and raw.status_code == 200
    assert raw.http_response.json() == {"id": row.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        env.oai(alice).responses.retrieve(row.id)
    with pytest.raises(openai.NotFoundError) as again:
        env.oai(alice).responses.delete(row.id)
    assert_not_found(again.value, row.id)
    other = stored(alice_id)
    env.put(other)
    env.oai(alice).responses.delete(other.id)  # the SDK's own call succeeds (it returns None)
    with pytest.raises(openai.NotFoundError):
        env.oai(alice).responses.retrieve(other.id)


def test_input_items_page_by_after_limit_and_order(env: Env, keys: dict[str, tuple[str, str]]) -> None:
    (alice_id, alice), (_, bob) = keys["alice"], keys["bob"]
    row = stored(alice_id)
    env.put(row)
    client = env.oai(alice)
    page = client.responses.input_items.list(row.id, limit=2)  # default order: desc
    assert [item.id for item in page.data] == item_ids(row, 5, 4)
    assert page.has_more is True
    raw = env.http(alice).get(f"/v1/responses/{row.id}/input_items", params={"limit": 2}).json()
    assert raw["object"] == "list" and raw["has_more"] is True
    assert (raw["first_id"], raw["last_id"]) == tuple(item_ids(row, 5, 4))
    assert page.data[0].type == "message" and page.data[0].content[0].text == "turn 5"  # type: ignore[union-attr]
    # The SDK's auto-paging follows last_id with after= until has_more is false.
    assert [item.id for item in client.responses.input_items.list(row.id, limit=2)] == item_ids(row, 5, 4, 3, 2, 1)
    asc = client.responses.input_items.list(row.id, order="asc")
    assert [item.id for item in asc.data] == item_ids(row, 1, 2, 3, 4, 5) and asc.has_more is False
    after = client.responses.input_items.list(row.id, order="asc", after=item_ids(row, 2)[0], limit=2)
    assert [item.id for item in after.data] == item_ids(row, 3, 4) and after.has_more is True
    last = client.responses.input_items.list(row.id, order="desc", after=item_ids(row, 2)[0])
    assert [item.id for item in last.data] == item_ids(row, 1) and last.has_more is False
    body = env.http(alice).get(f"/v1/responses/{row.id}/input_items", params={"after": item_ids(row, 1)[0]}).json()
    assert body == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    included = client.responses.input_items.list(row.id, include=["message.input_image.image_url"])
    assert len(included.data) == ITEMS
    with pytest.raises(openai.NotFoundError) as bob_lists:
        env.oai(bob).responses.input_items.list(row.id)
    assert_not_found(bob_lists.value, row.id)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"include": "message.secret_sauce"}, "include"),
        ({"after": "msg_not_in_this_response"}, "after"),
    ],
)
def test_bad_input_items_parameters_are_400_naming_the_parameter(
    env: Env, keys: dict[str, tuple[str, str]], params: dict[str, str], param: str
) -> None:
    alice_id, alice = keys["alice"]
    row = stored(alice_id)
    env.put(row)
    with pytest.raises(openai.BadRequestError) as exc:
        env.oai(alice).responses.input_items.list(row.id, extra_query=params)
    assert exc.value.status_code == 400
    body = exc.value.body
    assert isinstance(body, dict) and body["param"] == param and body["type"] == "invalid_request_error"
    assert param in body["message"]


def test_retrieving_as_a_stream_is_refused_with_400(env: Env, keys: dict[str, tuple[str, str]]) -> None:
    alice_id, alice = keys["alice"]
    row = stored(alice_id)
    env.put(row)
    r = env.http(alice).get(f"/v1/responses/{row.id}", params={"stream": "true"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"


# -- an open gateway (no key ever issued, no master key) --------------------------------------------------


@pytest.fixture(scope="module")
def open_env(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("responses-open")
    with backend("sqlite", workdir) as b:
        gw = start_gateway(state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))), workdir, b)
        try:
            yield Env(gw, b)
        finally:
            gw.stop()


def test_on_an_open_gateway_a_caller_without_a_key_sees_only_keyless_responses(open_env: Env) -> None:
    keyless, keyed = stored(None, text="open answer"), stored("somekey")
    open_env.put(keyless, keyed)
    client = open_env.oai("any-dummy-key")  # the SDK insists on one; an open gateway takes any token as no key
    assert client.responses.retrieve(keyless.id).output_text == "open answer"
    assert len(client.responses.input_items.list(keyless.id).data) == ITEMS
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.retrieve(keyed.id)
    assert_not_found(exc.value, keyed.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(keyed.id)
    assert open_env.http(None).get(f"/v1/responses/{keyless.id}").content == keyless.response  # no key at all
    client.responses.delete(keyless.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(keyless.id)
