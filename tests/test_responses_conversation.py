"""POST /v1/responses and the stored-response endpoints together, through the running gateway with the official
openai SDK, on SQLite and PostgreSQL: a stored answer is retrievable by its key exactly as returned, its input
items are listed, ``previous_response_id`` continues the conversation on any upstream family (the upstream sees
the earlier turns), another key can neither read nor continue it, ``store: false`` keeps nothing, a deleted
response cannot be continued, and the configured retention is what the row gets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from omnirelay.state.backends import open_store
from tests.gateway import Gateway
from tests.mocks.server import MockUpstreams
from tests.state_helpers import BACKENDS, Admin, Backend, backend, start_gateway, state_config

RETENTION_S = 3600.0
FAMILY_MODELS = {"openai": "gpt-4.1", "anthropic": "claude-sonnet-4-20250514", "gemini": "gemini-2.5-pro"}


class Env:
    def __init__(self, gw: Gateway, b: Backend, keys: dict[str, tuple[str, str]]) -> None:
        self.gw = gw
        self.backend = b
        self.keys = keys  # name -> (key id, secret)

    def oai(self, who: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=self.keys[who][1], max_retries=0, timeout=30)

    def stored_lifetime(self, response_id: str, who: str) -> float:
        """expires_at - created_at of the stored row, read from the database itself."""

        async def read() -> float:
            store = open_store(self.backend.database_url)
            await store.open()
            try:
                row = await store.responses.get(response_id, self.keys[who][0])
                assert row is not None, "the response was not stored"
                return row.expires_at - row.created_at
            finally:
                await store.close()

        return asyncio.run(read())


@pytest.fixture(scope="module", params=BACKENDS)
def env(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp(f"responses-flow-{request.param}")
    with backend(request.param, workdir) as b:
        cfg = state_config(
            (mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")), responses_retention_s=RETENTION_S
        )
        gw = start_gateway(cfg, workdir, b)
        try:
            admin = Admin(gw.url)
            yield Env(gw, b, {name: admin.create_key(name=name) for name in ("alice", "bob")})
        finally:
            gw.stop()


def _texts_sent(mocks: MockUpstreams, family: str) -> str:
    """Everything the upstream's last request said, as one string (the earlier turns must be in it)."""
    return str(mocks.last_request(family).body)


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_a_stored_answer_is_retrieved_listed_and_continued(env: Env, mocks: MockUpstreams, family: str) -> None:
    model = FAMILY_MODELS[family]
    alice = env.oai("alice")
    first = alice.responses.create(model=model, input="first question: the colour is teal")
    assert first.output_text == "echo: first question: the colour is teal"
    got = alice.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text and got.status == "completed"
    items = alice.responses.input_items.list(first.id)
    assert [i.type for i in items.data] == ["message"]
    second = alice.responses.create(model=model, input="second question", previous_response_id=first.id)
    assert second.output_text == "echo: second question"
    sent = _texts_sent(mocks, family)
    assert "first question: the colour is teal" in sent and "echo: first question" in sent and "second question" in sent
    assert env.stored_lifetime(second.id, "alice") == pytest.approx(RETENTION_S, abs=1.0)


def test_another_key_can_neither_read_nor_continue(env: Env) -> None:
    first = env.oai("alice").responses.create(model="gpt-4.1", input="private")
    bob = env.oai("bob")
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as info:
        bob.responses.create(model="gpt-4.1", input="steal", previous_response_id=first.id)
    assert info.value.status_code == 404


def test_store_false_keeps_nothing_and_a_deleted_response_cannot_be_continued(env: Env) -> None:
    alice = env.oai("alice")
    unstored = alice.responses.create(model="gpt-4.1", input="ephemeral", store=False)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(unstored.id)
    kept = alice.responses.create(model="gpt-4.1", input="kept")
    assert alice.responses.retrieve(kept.id).id == kept.id  # stored before the reply went out
    alice.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="gpt-4.1", input="again", previous_response_id=kept.id)
