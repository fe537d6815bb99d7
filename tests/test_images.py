"""``POST /v1/images/generations`` through the running gateway with the official openai SDK
(``client.images.generate``), against the OpenAI mock (gpt-image-1, dall-e-2/3), the xAI preset (grok-2-image)
and the Gemini mock (Imagen ``:predict``): the images are the PNGs the mock made, the upstream got the fields its
model accepts, each call is priced as its provider bills it, recorded (protocol ``openai_images``) and charged to
the key exactly, and a model that is not configured or cannot make images is a clear 404/400."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.images import PNG_SIGNATURE, colour_of, solid_png
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams
from tests.state_helpers import Admin, backend, start_gateway, state_config

PROMPT = "a lighthouse on a cliff at dawn"


class Env:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.admin = Admin(gw.url)

    def client(self, secret: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=secret, max_retries=0, timeout=60)

    def key(self, **fields: Any) -> tuple[str, openai.OpenAI]:
        key_id, secret = self.admin.create_key(**fields)
        return key_id, self.client(secret)

    def record(self, key_id: str) -> dict[str, Any]:
        rows = self.admin.wait_usage(1, key=key_id)
        assert len(rows) == 1, rows
        return rows[0]

    def spent(self, key_id: str) -> float:
        spent: float = self.admin.key(key_id)["spent"]
        return spent


@pytest.fixture(scope="module")
def env(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("images")
    with backend("sqlite", workdir) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        for up in cfg["upstreams"]:
            if up["name"] == "mock-openai":
                up["models"] = [*up["models"], "dall-e-*"]
            if up["name"] == "mock-gemini":
                up["models"] = [*up["models"], "imagen-*"]
        # An operator's own per-image price (the catalogue has imagen-3.0 at $0.03).
        cfg["prices"] = {"imagen-3.0-generate-002": {"input": 0, "output": 0, "per_image": {"*": 0.25}}}
        gw = start_gateway(cfg, workdir, b)
        try:
            yield Env(gw)
        finally:
            gw.stop()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _assert_mock_pngs(b64_images: list[str | None], width: int, height: int) -> None:
    for i, b64 in enumerate(b64_images):
        assert b64 is not None
        data = base64.b64decode(b64)
        assert _png_size(data) == (width, height)
        assert data == solid_png(width, height, colour_of(PROMPT, i))  # the very image the mock made


# -- OpenAI: gpt-image-1 (per token) -------------------------------------------------------------------


def test_gpt_image_1_returns_the_mocks_pngs_priced_per_token(env: Env, mocks: MockUpstreams) -> None:
    key_id, client = env.key(credit=5.0)
    resp = client.images.generate(model="gpt-image-1", prompt=PROMPT, n=2, size="1536x1024", quality="medium")
    assert [d.url for d in resp.data or []] == [None, None]
    _assert_mock_pngs([d.b64_json for d in resp.data or []], 1536, 1024)
    assert resp.usage is not None and resp.usage.output_tokens == 2 * 1568
    sent = mocks.last_request("openai")
    assert sent.path == "/v1/images/generations"
    assert sent.headers["Authorization"] == "Bearer sk-mock-openai-secret"
    assert sent.body == {"model": "gpt-image-1", "prompt": PROMPT, "n": 2, "size": "1536x1024", "quality": "medium"}
    cost = (resp.usage.input_tokens * 5.0 + 2 * 1568 * 40.0) / 1e6  # $5 / $40 per million text in / image out
    rec = env.record(key_id)
    assert rec["protocol"] == "openai_images" and rec["model_used"] == "gpt-image-1"
    assert rec["upstream"] == "mock-openai" and rec["status"] == 200
    assert (rec["input_tokens"], rec["output_tokens"]) == (resp.usage.input_tokens, 2 * 1568)
    assert rec["cost"] == pytest.approx(cost, abs=1e-9)
    assert env.spent(key_id) == pytest.approx(cost, abs=1e-9)


def test_gpt_image_1_url_format_is_a_data_url_of_the_png(env: Env, mocks: MockUpstreams) -> None:
    _key_id, client = env.key()
    resp = client.images.generate(model="gpt-image-1", prompt=PROMPT, response_format="url", background="transparent")
    (image,) = resp.data or []
    assert image.url is not None and image.url.startswith("data:image/png;base64,")
    assert base64.b64decode(image.url.partition(",")[2]) == solid_png(1024, 1024, colour_of(PROMPT, 0))
    sent = mocks.last_request("openai").body
    assert "response_format" not in sent  # gpt-image-1 refuses the field
    assert sent["background"] == "transparent"


# -- OpenAI: dall-e (per image) -------------------------------------------------------------------------


def test_dall_e_3_priced_per_image_by_quality_and_size(env: Env, mocks: MockUpstreams) -> None:
    key_id, client = env.key(credit=5.0)
    resp = client.images.generate(
        model="dall-e-3", prompt=PROMPT, size="1792x1024", quality="hd", style="natural", response_format="b64_json"
    )
    (image,) = resp.data or []
    assert image.revised_prompt == f"A detailed rendering of {PROMPT}"
    _assert_mock_pngs([image.b64_json], 1792, 1024)
    assert mocks.last_request("openai").body == {
        "model": "dall-e-3",
        "prompt": PROMPT,
        "n": 1,
        "size": "1792x1024",
        "quality": "hd",
        "response_format": "b64_json",
        "style": "natural",
    }
    rec = env.record(key_id)
    assert rec["protocol"] == "openai_images" and rec["cost"] == pytest.approx(0.12)
    assert env.spent(key_id) == pytest.approx(0.12)


def test_dall_e_3_url_passes_through_and_standard_is_cheaper(env: Env, mocks: MockUpstreams) -> None:
    key_id, client = env.key(credit=5.0)
    resp = client.images.generate(model="dall-e-3", prompt=PROMPT)  # standard 1024x1024, url
    (image,) = resp.data or []
    assert image.url is not None and image.url.startswith("https://images.mock.invalid/img-")
    assert mocks.last_request("openai").body == {"model": "dall-e-3", "prompt": PROMPT, "n": 1}
    assert env.record(key_id)["cost"] == pytest.approx(0.04)


def test_dall_e_2_n_images_each_charged(env: Env) -> None:
    key_id, client = env.key(credit=5.0)
    resp = client.images.generate(model="dall-e-2", prompt=PROMPT, n=3, size="256x256", response_format="b64_json")
    _assert_mock_pngs([d.b64_json for d in resp.data or []], 256, 256)
    assert env.record(key_id)["cost"] == pytest.approx(3 * 0.016)
    assert env.spent(key_id) == pytest.approx(3 * 0.016)


def test_upstream_refusal_is_the_callers_400_without_secrets(env: Env, mocks: MockUpstreams) -> None:
    key_id, client = env.key(credit=5.0)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="dall-e-3", prompt=PROMPT, n=2)
    assert "n=1" in str(e.value.message)
    mocks.push("openai", ScriptedReply(error_status=400, error_message="bad key sk-mock-openai-secret here"))
    with pytest.raises(openai.BadRequestError) as e2:
        client.images.generate(model="dall-e-3", prompt=PROMPT)
    assert "sk-mock-openai-secret" not in str(e2.value.body)
    assert env.spent(key_id) == 0.0
    rows = env.admin.wait_usage(2, key=key_id)
    assert sorted(r["status"] for r in rows) == [400, 400] and all(r["cost"] == 0 for r in rows)


# -- xAI and Gemini -------------------------------------------------------------------------------------


def test_xai_grok_2_image(env: Env, mocks: MockUpstreams) -> None:
    key_id, client = env.key(credit=5.0)
    resp = client.images.generate(
        model="grok-2-image", prompt=PROMPT, n=2, size="1024x1024", response_format="b64_json"
    )
    _assert_mock_pngs([d.b64_json for d in resp.data or []], 1024, 768)
    assert all(d.revised_prompt for d in resp.data or [])
    sent = mocks.last_request("openai")
    assert sent.headers["Authorization"] == "Bearer xai-mock-secret"
    assert sent.body == {"model": "grok-2-image", "prompt": PROMPT, "n": 2, "response_format": "b64_json"}
    rec = env.record(key_id)
    assert rec["upstream"] == "mock-xai" and rec["cost"] == pytest.approx(2 * 0.07)
    assert env.spent(key_id) == pytest.approx(2 * 0.07)


def test_gemini_imagen_predict(env: Env, mocks: MockUpstreams) -> None:
    key_id, client = env.key(credit=5.0)
    resp = client.images.generate(
        model="imagen-4.0-generate-001", prompt=PROMPT, n=3, size="1792x1024", response_format="b64_json"
    )
    _assert_mock_pngs([d.b64_json for d in resp.data or []], 1408, 768)
    sent = mocks.last_request("gemini")
    assert sent.path == "/v1beta/models/imagen-4.0-generate-001:predict"
    assert sent.headers["x-goog-api-key"] == "gm-mock-secret"
    assert sent.body == {"instances": [{"prompt": PROMPT}], "parameters": {"sampleCount": 3, "aspectRatio": "16:9"}}
    rec = env.record(key_id)
    assert rec["provider"] == "gemini" and rec["cost"] == pytest.approx(3 * 0.04)
    assert env.spent(key_id) == pytest.approx(3 * 0.04)
    plain = client.images.generate(model="imagen-4.0-generate-001", prompt=PROMPT).data or []
    _assert_mock_pngs([plain[0].b64_json], 1024, 1024)  # no response_format: base64, as Imagen returned it
    url = client.images.generate(model="imagen-4.0-generate-001", prompt=PROMPT, response_format="url").data or []
    assert url[0].url is not None and url[0].url.startswith("data:image/png;base64,")
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="imagen-4.0-generate-001", prompt=PROMPT, n=5)
    assert e.value.body["param"] == "n"  # type: ignore[index]


def test_configured_per_image_price_overrides_the_catalogue(env: Env) -> None:
    key_id, client = env.key(credit=5.0)
    client.images.generate(model="imagen-3.0-generate-002", prompt=PROMPT, n=2)
    assert env.record(key_id)["cost"] == pytest.approx(0.5)
    assert env.spent(key_id) == pytest.approx(0.5)


# -- metering -------------------------------------------------------------------------------------------


def test_credit_reservation_refuses_what_the_key_cannot_afford(env: Env, mocks: MockUpstreams) -> None:
    key_id, client = env.key(credit=0.1)
    before = len(mocks.requests("openai"))
    with pytest.raises(openai.RateLimitError) as e:
        client.images.generate(model="dall-e-2", prompt=PROMPT, n=6)  # 6 x $0.02 = $0.12 > $0.10
    assert e.value.code == "insufficient_quota"
    with pytest.raises(openai.RateLimitError):  # 4160 output tokens at $40/M per high image: $0.17 each
        client.images.generate(model="gpt-image-1", prompt=PROMPT, quality="high")
    assert len(mocks.requests("openai")) == before  # refused before any upstream call
    client.images.generate(model="dall-e-2", prompt=PROMPT, n=5)  # $0.10 fits
    assert env.spent(key_id) == pytest.approx(0.1)


def test_allow_list_and_rpm_apply(env: Env) -> None:
    _kid, limited = env.key(models=["gpt-4.1"])
    with pytest.raises(openai.PermissionDeniedError):
        limited.images.generate(model="dall-e-2", prompt=PROMPT)
    _kid2, slow = env.key(rpm=1)
    slow.images.generate(model="dall-e-2", prompt=PROMPT)
    with pytest.raises(openai.RateLimitError) as e:
        slow.images.generate(model="dall-e-2", prompt=PROMPT)
    assert e.value.code == "rate_limit_exceeded"


# -- what cannot generate images ------------------------------------------------------------------------


def test_no_image_model_configured_is_404_naming_the_configuration(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    with pytest.raises(openai.NotFoundError) as e:
        client.images.generate(model="dall-e-3", prompt=PROMPT)  # the default test gateway routes no dall-e
    assert e.value.code == "model_not_found"
    assert "No image model 'dall-e-3' is configured" in e.value.message and "`models:`" in e.value.message


def test_chat_models_cannot_generate_images(env: Env, mocks: MockUpstreams) -> None:
    _kid, client = env.key()
    before = len(mocks.requests("openai")) + len(mocks.requests("anthropic"))
    for model in ("gpt-4.1", "claude-sonnet-4-20250514"):
        with pytest.raises(openai.BadRequestError) as e:
            client.images.generate(model=model, prompt=PROMPT)
        assert e.value.code == "model_not_image_capable" and model in e.value.message
    assert len(mocks.requests("openai")) + len(mocks.requests("anthropic")) == before
    r = httpx.post(
        env.gw.url + "/v1/images/generations",
        json={"prompt": PROMPT},
        headers={"authorization": client.api_key and f"Bearer {client.api_key}"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = httpx.post(
        env.gw.url + "/v1/images/generations",
        json={"model": "dall-e-2", "prompt": PROMPT, "response_format": "png"},
        headers={"authorization": f"Bearer {client.api_key}"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
