"""``POST /v1/embeddings`` through the running gateway with the official openai SDK (``client.embeddings.create``)
and raw httpx: OpenAI, Gemini (``embedContent`` / ``batchEmbedContents``), Mistral and Ollama presets against
the mocks, and the offline all-MiniLM-L6-v2 model for real; metered like chat (key, allow-list, RPM, credit,
exact charge, one usage record with protocol ``openai_embeddings``), on SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.openai_server import mock_token_count, mock_vector
from tests.mocks.server import MockUpstreams
from tests.state_helpers import BACKENDS, Admin, backend, start_gateway, state_config

SMALL = "text-embedding-3-small"  # 0.02 USD per million input tokens (catalogue)
LOCAL = "all-minilm-l6-v2"
SIMILAR = ("A cat is sitting on the mat.", "A kitten sits on a rug.")
UNRELATED = "Quarterly corporate tax filings are due in April."


class Env:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.admin = Admin(gw.url)
        self.http = httpx.Client(base_url=gw.url, timeout=60)
        self.secret = self.admin.create_key()[1]  # no limits, no credit: every model, never charged

    def oai(self, secret: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=secret or self.secret, max_retries=0, timeout=60)

    def post(self, body: dict[str, Any], secret: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {secret or self.secret}"}
        return self.http.post("/v1/embeddings", json=body, headers=headers)


@pytest.fixture(scope="module", params=BACKENDS)
def env(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp(f"embeddings-{request.param}")
    with backend(request.param, workdir) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        ups = cfg["upstreams"]
        ups[0]["models"] = [*ups[0]["models"], "text-embedding-*"]
        openai_url = mocks.url("openai")
        ups += [
            {"name": "mock-mistral", "provider": "openai", "preset": "mistral", "base_url": openai_url,
             "api_key": "mistral-mock-secret", "models": ["mistral-*"]},
            {"name": "mock-ollama", "provider": "openai", "preset": "ollama", "base_url": openai_url,
             "api_key": "ollama", "models": ["nomic-embed-text"]},
            {"name": "local-embeddings", "provider": "local_embeddings", "models": [LOCAL]},
        ]  # fmt: skip
        cfg["prices"] = {"nomic-embed-text": {"input": 0.05, "output": 0.0}}
        gw = start_gateway(cfg, workdir, b)
        try:
            yield Env(gw)
        finally:
            gw.stop()


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (_norm(a) * _norm(b))


def _b64(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# -- OpenAI ------------------------------------------------------------------------------------------------


def test_openai_sdk_list_input_vectors_usage_and_upstream_request(env: Env, mocks: MockUpstreams) -> None:
    texts = [*SIMILAR, UNRELATED]
    resp = env.oai().embeddings.create(model=SMALL, input=texts)
    assert [d.index for d in resp.data] == [0, 1, 2] and resp.model == SMALL
    for d, text in zip(resp.data, texts, strict=True):
        assert len(d.embedding) == 1536 and abs(_norm(d.embedding) - 1) < 1e-5
        assert d.embedding == pytest.approx(mock_vector(text, 1536), abs=1e-6)
    tokens = sum(mock_token_count(t) for t in texts)
    assert (resp.usage.prompt_tokens, resp.usage.total_tokens) == (tokens, tokens)
    sent = mocks.last_request("openai")
    assert sent.path == "/v1/embeddings" and sent.headers["Authorization"] == "Bearer sk-mock-openai-secret"
    assert sent.body == {"model": SMALL, "input": texts, "encoding_format": "base64"}


def test_float_and_base64_encodings_agree_and_dimensions_are_passed(env: Env, mocks: MockUpstreams) -> None:
    floats = env.post({"model": SMALL, "input": "hello world", "encoding_format": "float", "dimensions": 256})
    assert floats.status_code == 200, floats.text
    vec = floats.json()["data"][0]["embedding"]
    assert isinstance(vec, list) and len(vec) == 256 and abs(_norm(vec) - 1) < 1e-5
    assert mocks.last_request("openai").body["dimensions"] == 256
    b64 = env.post({"model": SMALL, "input": "hello world", "encoding_format": "base64", "dimensions": 256})
    body = b64.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    assert _b64(body["data"][0]["embedding"]) == pytest.approx(vec, abs=1e-7)


def test_token_array_inputs_reach_openai_as_token_arrays(env: Env, mocks: MockUpstreams) -> None:
    resp = env.oai().embeddings.create(model=SMALL, input=[[101, 202, 303], [404, 505]])
    assert len(resp.data) == 2 and resp.usage.prompt_tokens == 5
    assert mocks.last_request("openai").body["input"] == [[101, 202, 303], [404, 505]]
    one = env.oai().embeddings.create(model=SMALL, input=[7, 8, 9, 10])
    assert len(one.data) == 1 and one.usage.prompt_tokens == 4
    assert mocks.last_request("openai").body["input"] == [[7, 8, 9, 10]]


# -- Gemini, Mistral, Ollama -------------------------------------------------------------------------------


def test_gemini_embed_content_and_batch_embed_contents(env: Env, mocks: MockUpstreams) -> None:
    one = env.oai().embeddings.create(model="gemini-embedding-001", input="hello world")
    sent = mocks.last_request("gemini")
    assert sent.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert sent.headers["x-goog-api-key"] == "gm-mock-secret" and "key" not in sent.query
    assert sent.body["content"] == {"parts": [{"text": "hello world"}]}
    assert len(one.data[0].embedding) == 3072
    assert one.data[0].embedding == pytest.approx(mock_vector("hello world", 3072), abs=1e-6)
    assert one.usage.prompt_tokens == 3  # Gemini reports no count: the gateway's estimate (11 chars / 4)

    many = env.oai().embeddings.create(model="gemini-embedding-001", input=list(SIMILAR), dimensions=128)
    sent = mocks.last_request("gemini")
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [r["model"] for r in sent.body["requests"]] == ["models/gemini-embedding-001"] * 2
    assert [r["outputDimensionality"] for r in sent.body["requests"]] == [128, 128]
    for d, text in zip(many.data, SIMILAR, strict=True):
        # The mock, like Gemini, does not normalise shortened vectors; the gateway does, as OpenAI would.
        assert len(d.embedding) == 128 and abs(_norm(d.embedding) - 1) < 1e-5
        assert _cos(d.embedding, mock_vector(text, 3072)[:128]) == pytest.approx(1.0, abs=1e-6)


def test_gemini_rejects_token_arrays_with_a_400(env: Env) -> None:
    r = env.post({"model": "gemini-embedding-001", "input": [[1, 2, 3]]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


def test_mistral_preset_sends_only_fields_mistral_accepts(env: Env, mocks: MockUpstreams) -> None:
    resp = env.oai().embeddings.create(model="mistral-embed", input=["bonjour", "hello"], user="u-1")
    assert len(resp.data) == 2 and len(resp.data[0].embedding) == 1024
    sent = mocks.last_request("openai")
    assert sent.headers["Authorization"] == "Bearer mistral-mock-secret"
    assert sent.body == {"model": "mistral-embed", "input": ["bonjour", "hello"]}  # no user, no encoding_format


def test_ollama_preset_asks_for_floats_and_the_gateway_encodes_base64(env: Env, mocks: MockUpstreams) -> None:
    r = env.post({"model": "nomic-embed-text", "input": "local model", "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    assert "encoding_format" not in mocks.last_request("openai").body
    assert _b64(r.json()["data"][0]["embedding"]) == pytest.approx(mock_vector("local model", 768), abs=1e-7)


# -- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["deepseek-chat", "claude-sonnet-4-20250514", "grok-3-mini"])
def test_a_model_that_cannot_embed_is_a_400_naming_it(env: Env, model: str, mocks: MockUpstreams) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        env.oai().embeddings.create(model=model, input="hi")
    assert model in err.value.message and err.value.code == "model_not_supported"
    assert not mocks.requests("openai") and not mocks.requests("anthropic")


def test_bad_input_is_a_400_naming_the_field(env: Env) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": SMALL, "input": ""}, "input[0]"),
        ({"model": SMALL, "input": ["ok", ""]}, "input[1]"),
        ({"model": SMALL, "input": []}, "input"),
        ({"model": SMALL, "input": ["text", [1, 2]]}, "input[1]"),
        ({"model": SMALL, "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": SMALL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": SMALL, "input": ["x"] * 2049}, "input"),
        ({"input": "x"}, "model"),
    ]
    for body, param in cases:
        r = env.post(body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == param, r.text
    assert env.post({"model": "no-such-model", "input": "x"}).status_code == 404


# -- metering ------------------------------------------------------------------------------------------------


def test_key_is_charged_exactly_and_one_usage_record_is_written(env: Env) -> None:
    kid, secret = env.admin.create_key(credit=1.0)
    texts = [*SIMILAR, UNRELATED]
    raw = env.oai(secret).embeddings.with_raw_response.create(model=SMALL, input=texts)
    tokens = sum(mock_token_count(t) for t in texts)
    expected = tokens * 0.02 / 1e6
    assert raw.parse().usage.prompt_tokens == tokens
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(expected, abs=1e-15)
    rows = [r for r in env.admin.wait_usage(1, key=kid) if r["request_id"] == raw.headers["x-request-id"]]
    assert len(rows) == 1
    rec = rows[0]
    assert rec["protocol"] == "openai_embeddings" and rec["model_requested"] == SMALL
    assert (rec["upstream"], rec["input_tokens"], rec["output_tokens"], rec["status"]) == (
        "mock-openai",
        tokens,
        0,
        200,
    )
    assert rec["cost"] == pytest.approx(expected, abs=1e-15)
    assert env.admin.key(kid)["balance"] == pytest.approx(1.0 - expected, abs=1e-12)


def test_allow_list_credit_and_rpm_apply_to_embeddings(env: Env) -> None:
    assert env.post({"model": SMALL, "input": "x"}, secret="sk-not-a-key").status_code == 401
    _kid, narrow = env.admin.create_key(models=["gpt-*"])
    r = env.post({"model": SMALL, "input": "x"}, secret=narrow)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    _kid, broke = env.admin.create_key(credit=0)
    assert env.post({"model": SMALL, "input": "x"}, secret=broke).status_code == 429
    _kid, slow = env.admin.create_key(rpm=1)
    first = env.post({"model": SMALL, "input": "x"}, secret=slow)
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-requests"] == "1"
    assert env.post({"model": SMALL, "input": "x"}, secret=slow).status_code == 429


def test_upstream_failure_is_a_clean_error_with_a_record(env: Env, mocks: MockUpstreams) -> None:
    from tests.mocks.script import ScriptedReply

    kid, secret = env.admin.create_key(credit=1.0)
    mocks.push("openai", *[ScriptedReply(error_status=500, error_message="boom")] * 5)
    r = env.post({"model": SMALL, "input": "x"}, secret=secret)
    assert r.status_code == 502 and "sk-mock-openai-secret" not in r.text
    rows = env.admin.wait_usage(1, key=kid)
    assert rows[0]["status"] == 502 and rows[0]["cost"] == 0
    assert env.admin.key(kid)["balance"] == pytest.approx(1.0, abs=1e-12)


# -- the offline model, for real -----------------------------------------------------------------------------


def test_local_model_is_listed_and_embeds_for_real(env: Env) -> None:
    client = env.oai()
    assert LOCAL in [m.id for m in client.models.list()]
    texts = [*SIMILAR, UNRELATED]
    resp = client.embeddings.create(model=LOCAL, input=texts, encoding_format="float")
    vectors = [d.embedding for d in resp.data]
    assert all(len(v) == 384 and abs(_norm(v) - 1) < 1e-4 for v in vectors)
    similar, unrelated = _cos(vectors[0], vectors[1]), _cos(vectors[0], vectors[2])
    assert similar > 0.5 and similar > unrelated + 0.3, (similar, unrelated)
    assert resp.usage.prompt_tokens > len(texts) * 3  # WordPiece tokens incl. [CLS] and [SEP]

    short = client.embeddings.create(model=LOCAL, input=texts[0], dimensions=64, encoding_format="float")
    cut = short.data[0].embedding
    assert len(cut) == 64 and abs(_norm(cut) - 1) < 1e-5
    prefix = vectors[0][:64]
    assert cut == pytest.approx([x / _norm(prefix) for x in prefix], abs=1e-5)

    b64 = env.post({"model": LOCAL, "input": texts[0], "encoding_format": "base64"}).json()
    assert _b64(b64["data"][0]["embedding"]) == pytest.approx(vectors[0], abs=1e-5)


def test_local_embedding_model_does_not_chat(env: Env) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        env.oai().chat.completions.create(model=LOCAL, messages=[{"role": "user", "content": "hi"}])
    assert "/v1/embeddings" in err.value.message


def test_a_gateway_without_configuration_embeds_offline(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No config file, no keys, no network: the default upstreams include the bundled embedding model."""
    gw = Gateway({"server": {}}, tmp_path_factory.mktemp("default-embeddings"), env={"OPENAI_API_KEY": ""}).start()
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0, timeout=60)
        assert LOCAL in [m.id for m in client.models.list()]
        resp = client.embeddings.create(model=LOCAL, input=list(SIMILAR))
        assert [len(d.embedding) for d in resp.data] == [384, 384]
    finally:
        gw.stop()
