"""Server-level behaviour: routes, body limits, model listing, config loading, secrets kept out of logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.gateway import ROOT, Gateway
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


def test_upstream_secrets_never_logged(gateway: Gateway, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="missing-model", messages=[{"role": "user", "content": "hello"}])
    log = gateway.log()
    for secret in ("sk-mock-openai-secret", "sk-ant-mock-secret", "gm-mock-secret", "xai-mock-secret"):
        assert secret not in log


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
