"""Server-level behaviour: routes, body limits, model listing, config loading, secrets kept out of logs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from omnirelay.compound import MODES, split_virtual
from tests.gateway import ROOT, Gateway, mock_config
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams


def test_health(gateway: Gateway) -> None:
    r = httpx.get(gateway.url + "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_unknown_route_is_openai_shaped_404(gateway: Gateway) -> None:
    r = httpx.get(gateway.url + "/v1/nope")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "not_found_error" or err["type"] == "invalid_request_error"
    assert "/v1/nope" in err["message"]


def test_wrong_method_is_405(gateway: Gateway) -> None:
    r = httpx.get(gateway.url + "/v1/chat/completions")
    assert r.status_code == 405
    assert "error" in r.json()


def test_body_too_large_is_413_in_each_format(gateway: Gateway) -> None:
    big = b'{"model": "gpt-4.1", "messages": [{"role": "user", "content": "' + b"x" * (3 * 1024 * 1024) + b'"}]}'
    r = httpx.post(gateway.url + "/v1/chat/completions", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "exceeds the limit" in r.json()["error"]["message"]
    r = httpx.post(
        gateway.url + "/v1/messages",
        content=big,
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 413
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "request_too_large"


def test_invalid_json_is_400(gateway: Gateway) -> None:
    r = httpx.post(
        gateway.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_models_list_openai_sdk(oai: openai.OpenAI) -> None:
    ids = {m.id for m in oai.models.list()}
    # Catalogue models matched by each mock upstream's patterns.
    assert {"gpt-4.1", "claude-sonnet-4-20250514", "deepseek-reasoner", "gemini-2.5-pro"} <= ids


@pytest.fixture(scope="module")
def openai_only(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with one upstream serving ``gpt-*``: each compound name (``deepsearch:gpt-4.1``, ``heavy:``)
    sorts before the plain one, as with the default config's local model."""
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["upstreams"] = [u for u in cfg["upstreams"] if u["name"] == "mock-openai"]
    gw = Gateway(cfg, tmp_path_factory.mktemp("openai-only")).start()
    yield gw
    gw.stop()


def test_models_list_puts_plain_models_first(openai_only: Gateway, mocks: MockUpstreams) -> None:
    oai = openai.OpenAI(base_url=openai_only.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    ids = [m.id for m in oai.models.list()]
    plain = [m for m in ids if split_virtual(m) is None]
    image_models = {"gpt-image-1", "gpt-image-1-mini"}  # catalogue image models that gpt-* also matches
    chat = [m for m in plain if m not in image_models]
    assert chat and ids[: len(chat)] == sorted(chat)  # every plain chat model, in name order, before any other
    assert ids[len(chat) : len(plain)] == sorted(image_models)  # then the models that do not chat
    assert ids[len(plain) :] == sorted(f"{mode}:{m}" for mode in MODES for m in chat)  # compound: chat models only
    claude = anthropic.Anthropic(base_url=openai_only.url, api_key="sk-test", max_retries=0, timeout=30)
    assert [m.id for m in claude.models.list().data] == ids
    # A newcomer's first call, on the first model listed: a plain answer from the upstream, no reasoning.
    reply = oai.chat.completions.create(model=ids[0], messages=[{"role": "user", "content": "hi"}])
    message = reply.choices[0].message
    assert message.content == "echo: hi"
    assert (message.model_extra or {}).get("reasoning_content") is None
    assert [r.body["model"] for r in mocks.requests("openai")] == [ids[0]]


def test_default_models_list_starts_with_the_bundled_chat_model(tmp_path: Path) -> None:
    """The no-config setup serves the bundled chat model and the bundled embedding model: the chat model comes
    first, and no compound mode is offered over the embedding model (it cannot chat)."""
    cfg = {
        "upstreams": [
            {"name": "local", "provider": "local", "models": ["smollm2-135m-instruct"]},
            {"name": "local-embeddings", "provider": "local_embeddings", "models": ["all-minilm-l6-v2"]},
        ]
    }
    gw = Gateway(cfg, tmp_path).start()
    try:
        oai = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
        ids = [m.id for m in oai.models.list()]
    finally:
        gw.stop()
    assert ids[:2] == ["smollm2-135m-instruct", "all-minilm-l6-v2"]
    assert sorted(ids[2:]) == sorted(f"{mode}:smollm2-135m-instruct" for mode in MODES)


def test_models_list_anthropic_sdk(claude: anthropic.Anthropic) -> None:
    page = claude.models.list()
    ids = {m.id for m in page.data}
    assert "claude-3-7-sonnet-20250219" in ids
    assert all(m.type == "model" for m in page.data)


def test_unknown_model_404_both_formats(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "no-such-model" in str(exc.value)
    with pytest.raises(anthropic.NotFoundError) as aexc:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert aexc.value.body is not None


def test_provider_prefix_routing(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    reply = oai.chat.completions.create(
        model="mock-openai/some-private-model", messages=[{"role": "user", "content": "route me"}]
    )
    assert reply.choices[0].message.content == "echo: route me"
    assert mocks.last_request("openai").body["model"] == "some-private-model"


def test_response_names_the_channel(gateway: Gateway) -> None:
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": "Bearer sk-test"},
    )
    assert r.status_code == 200
    assert r.headers["x-omnirelay-channel"] == "mock-openai/gpt-4.1"
    assert r.headers["x-omnirelay-attempts"] == "1"
    assert r.headers["x-request-id"].startswith("req_")


def test_secrets_never_logged_even_at_debug(mocks: MockUpstreams, tmp_path: Path) -> None:
    """At DEBUG, where the most is written, no secret reaches the log: not the upstreams' API keys, the master
    key, the admin key, a virtual key's secret, nor a wrong key a client sent."""
    master, admin_key = "sk-master-debug-secret", "adm-debug-secret"
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["server"]["master_key"] = master
    cfg["state"] = {"admin_key": admin_key}
    # The credit key below may call only priced models; these have no built-in price.
    cfg["prices"] = {m: {"input": 1.0, "output": 2.0} for m in ("gemini-2.5-pro", "grok-3", "deepseek-chat")}
    gw = Gateway(cfg, tmp_path, env={"OMNIRELAY_LOG_LEVEL": "DEBUG"}).start()
    try:
        admin = httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=30)
        created = admin.post("/admin/keys", json={"name": "debug-key", "credit": 1.0})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        wrong = secret[:-4] + "zzzz"
        oai = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=30)
        assert oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "a"}]).choices
        chunks = oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "b"}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: b"
        claude = anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0, timeout=30)
        for model in ("claude-sonnet-4-20250514", "gemini-2.5-pro", "grok-3", "deepseek-chat"):
            assert claude.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": "c"}])
        mocks.push("openai", *[ScriptedReply(error_status=500) for _ in range(3)])
        with pytest.raises(openai.APIStatusError):  # an upstream failure, retried (3 attempts), then reported
            oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "d"}])
        with pytest.raises(openai.AuthenticationError):
            oai.with_options(api_key=wrong).chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": "e"}]
            )
        with pytest.raises(openai.NotFoundError):
            oai.with_options(api_key=master).chat.completions.create(
                model="missing-model", messages=[{"role": "user", "content": "f"}]
            )
        assert admin.get("/admin/usage").status_code == 200
        assert admin.get("/admin/keys", headers={"authorization": f"Bearer {wrong}"}).status_code == 401
    finally:
        gw.stop()
    log = gw.log_path.read_text(errors="replace")
    assert " DEBUG " in log, log[-2000:]  # the level took effect: there was something to leak
    for leaked in (master, admin_key, secret, wrong, "sk-mock-openai-secret", "sk-ant-mock-secret"):
        assert leaked not in log
    for leaked in ("gm-mock-secret", "xai-mock-secret", "sk-mock-deepseek-secret"):
        assert leaked not in log


def test_check_config_reports_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams:\n  - name: x\n    provider: nosuch\n")
    run = subprocess.run(
        [sys.executable, "-m", "omnirelay", "check-config", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "invalid configuration" in run.stderr
    missing_env = tmp_path / "env.yaml"
    missing_env.write_text("upstreams:\n  - {name: x, provider: openai, api_key_env: OMNIRELAY_TEST_UNSET_VAR}\n")
    run = subprocess.run(
        [sys.executable, "-m", "omnirelay", "check-config", "--config", str(missing_env)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "OMNIRELAY_TEST_UNSET_VAR" in run.stderr


def test_config_repr_hides_key() -> None:
    from omnirelay.config import parse_config

    cfg = parse_config({"upstreams": [{"name": "a", "provider": "openai", "api_key": "sk-very-secret"}]})
    assert "sk-very-secret" not in repr(cfg.upstreams[0])
    assert "sk-very-secret" not in repr(cfg)
