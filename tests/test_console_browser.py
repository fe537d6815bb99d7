"""The web console in a real browser (Playwright driving Debian's headless chromium) against the real gateway
subprocess and the scripted mock upstreams: sign in, tokens used with the openai SDK, the request log and the
usage charts, redeeming a code, streaming playground chats (plain, think:, deepsearch:), admin pages denied to
members (UI and API), and XSS in key and model names. Screenshots of every page go to test-output/console/."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, create_user, signed_in
from tests.console_support import ADMIN_EMAIL, ADMIN_PASSWORD, MEMBER_PASSWORD, Console
from tests.gateway import ROOT, Gateway
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams
from tests.polling import wait_until
from tests.state_helpers import backend, start_gateway, state_config

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium; scripts/system-deps.sh)"
)
sync_api = pytest.importorskip("playwright.sync_api")

XSS = "<img src=x onerror=alert(1)>"
WAIT_MS = 15_000


class Env:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.admin_email = ADMIN_EMAIL
        self.admin = signed_in(gw.url, ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def env(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A gateway with accounts (the first admin from the environment, as an operator starts it) and a local
    search corpus for deepsearch:."""
    root = tmp_path_factory.mktemp("console")
    with backend("sqlite", root) as b:
        b.env.update({"OMNIRELAY_ADMIN_EMAIL": ADMIN_EMAIL, "OMNIRELAY_ADMIN_PASSWORD": ADMIN_PASSWORD})
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        cfg["extra"] = {"compound": {"search_backends": {"local": {"type": "local", "path": str(_corpus(root))}}}}
        gw = start_gateway(cfg, root / "gw", b)
        try:
            yield Env(gw)
        finally:
            gw.stop()


CORPUS = {
    "zorblax.md": "---\ntitle: Zorblax census 2024\ndate: 2024-06-01\n---\n"
    "The 2024 census counts 7,200 residents in Zorblax.",
}


def _corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    for name, text in CORPUS.items():
        (docs / name).write_text(text)
    index = root / "corpus.db"
    subprocess.run(
        [sys.executable, "-m", "omnirelay", "corpus", "add", str(docs), "--index", str(index)],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return index


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Tab:
    """One browser context and page, recording dialogs (an XSS payload that ran would open one) and page errors."""

    def __init__(self, browser: Any, gw: Gateway) -> None:
        self.context = browser.new_context(base_url=gw.url, viewport={"width": 1280, "height": 900})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.url)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def sign_in(self, email: str, password: str = MEMBER_PASSWORD) -> None:
        self.page.goto("/console")
        self.page.fill("#signin-email", email)
        self.page.fill("#signin-password", password)
        self.page.click("#signin-submit")
        self.page.wait_for_selector("#whoami .who-email")
        assert self.page.text_content("#whoami .who-email") == email

    def open(self, path: str, ready: str) -> None:
        """Go to a console page by its nav link when there is one (the app's own routing), else by URL."""
        self.page.goto("/console/" + path)
        self.page.wait_for_selector(ready)

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        assert not self.errors, self.errors
        assert not self.dialogs, self.dialogs  # the console opens none (two-click deletes); a payload would
        self.context.close()


@pytest.fixture()
def tab(browser: Any, env: Env) -> Iterator[Tab]:
    t = Tab(browser, env.gw)
    yield t
    t.close()


def _row(tab: Tab, table: str, text: str) -> Any:
    return tab.page.locator(f"{table} tbody tr", has_text=text)


def _funded_member(env: Env) -> str:
    return create_user(env.admin, topup_usd=5.0)


def _wait_logged(session: Console, request_id: str) -> None:
    wait_until(
        lambda: any(r["request_id"] == request_id for r in session.ok(session.get("/requests"))["data"]),
        deadline=10,
        what=f"{request_id} in /console/api/requests",
    )


def _create_token(tab: Tab, name: str, models: str = "") -> str:
    tab.open("tokens", "#create-token")
    tab.page.fill("#create-token input[name=name]", name)
    if models:
        tab.page.fill("#create-token input[name=models]", models)
    tab.page.click("#create-token button[type=submit]")
    secret = tab.page.wait_for_selector("#new-key-secret").text_content() or ""
    assert secret
    return secret


# -- tokens, the SDK, the request log and the charts -------------------------------------------------------------


def test_token_created_on_the_page_works_with_the_sdk_and_shows_in_log_and_charts(
    tab: Tab, env: Env, mocks: MockUpstreams
) -> None:
    email = _funded_member(env)
    tab.page.goto("/console/tokens")
    tab.page.wait_for_selector("#signin-email")  # any page asks a stranger to sign in first
    tab.shot("signin")
    tab.sign_in(email)
    assert tab.page.url.endswith("/console")
    tab.shot("overview")
    secret = _create_token(tab, "ci-token")
    tab.page.click("#copy-secret")
    tab.page.wait_for_function("() => document.getElementById('copy-status').textContent === 'Copied.'")
    assert tab.page.evaluate("() => navigator.clipboard.readText()") == secret
    row = _row(tab, "#token-list", "ci-token")
    assert row.count() == 1 and secret not in (row.text_content() or "")  # the list shows only the prefix
    tab.shot("tokens")

    mocks.push("openai", ScriptedReply(text="hello from the log"))
    client = openai.OpenAI(base_url=env.gw.url + "/v1", api_key=secret, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "hello from the log"
    request_id = raw.headers["x-request-id"]

    # The log: the usage journal flushes in the background; once the API has the row, the page shows it.
    _wait_logged(signed_in(env.gw.url, email), request_id)
    tab.open("requests", "#request-list table")
    row = _row(tab, "#request-list", request_id)
    assert row.count() == 1
    text = row.text_content() or ""
    assert "gpt-4.1" in text and "ci-token" in text and "200" in text and "12 / 7" in text
    href = tab.page.get_attribute("#requests-csv", "href") or ""
    assert href.startswith("/console/api/requests.csv")
    csv = tab.page.evaluate("async (u) => (await fetch(u)).text()", href)
    assert csv.splitlines()[0].startswith("request_id") and request_id in csv
    tab.shot("requests")

    # The charts: Chart.js's own data for the request and token charts holds the call.
    tab.open("usage", "#usage-totals")
    tab.page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('chart-requests'))", timeout=WAIT_MS
    )
    data = tab.page.evaluate(
        """() => Object.fromEntries(['requests', 'tokens', 'spend'].map((m) => [m,
             Chart.getChart(document.getElementById('chart-' + m)).data.datasets.map(
               (d) => [d.label, d.data.reduce((a, b) => a + b, 0)])]))"""
    )
    assert data["requests"] == [["gpt-4.1", 1]]
    assert data["tokens"] == [["gpt-4.1", 19]]
    assert data["spend"][0][1] == pytest.approx(12 * 2e-6 + 7 * 8e-6, abs=1e-12)
    assert "gpt-4.1" in (tab.page.text_content("#usage-totals") or "")
    assert "gpt-4.1" in (tab.page.text_content("#usage-latency") or "")
    tab.shot("usage")


def test_request_log_pages_and_filters(tab: Tab, env: Env, mocks: MockUpstreams) -> None:
    email = _funded_member(env)
    member = signed_in(env.gw.url, email)
    first = member.ok(member.post("/keys", {"name": "first"}), 201)
    second = member.ok(member.post("/keys", {"name": "second"}), 201)
    calls = [(first, "gpt-4.1")] * 50 + [(second, "gpt-4.1-mini"), (second, "no-such-model")]
    for key, model in calls:
        client = openai.OpenAI(base_url=env.gw.url + "/v1", api_key=key["secret"], max_retries=0, timeout=30)
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        except openai.NotFoundError:
            assert model == "no-such-model"
    wait_until(
        lambda: member.ok(member.get("/requests", limit=100))["data"].__len__() == len(calls),
        deadline=15,
        what="every call logged",
    )
    tab.sign_in(email)
    tab.open("requests", "#request-list table")
    rows = tab.page.locator("#request-list tbody tr")
    assert rows.count() == 50 and tab.page.is_disabled("#page-prev") and tab.page.is_enabled("#page-next")
    newest = rows.first.text_content() or ""
    assert "second" in newest and "no-such-model" in newest and "404" in newest
    tab.page.click("#page-next")
    tab.page.wait_for_function("() => document.getElementById('page-info').textContent === 'Page 2'")
    assert rows.count() == 2 and tab.page.is_disabled("#page-next")
    assert all("first" in t and "gpt-4.1" in t for t in rows.all_text_contents())
    tab.page.click("#page-prev")
    tab.page.wait_for_function("() => document.getElementById('page-info').textContent === 'Page 1'")
    assert rows.count() == 50

    def filtered(**fields: str) -> list[str]:
        for name in ("model", "status", "channel"):
            tab.page.fill(f"#filter-{name}", fields.get(name, ""))
        tab.page.select_option("#filter-key", label=fields.get("key", "any"))
        loads = tab.page.get_attribute("#request-list", "data-loads")
        tab.page.click("#request-filters button[type=submit]")
        tab.page.wait_for_function("(n) => document.getElementById('request-list').dataset.loads !== n", arg=loads)
        texts: list[str] = rows.all_text_contents()
        return texts

    by_key = filtered(key="second")
    assert len(by_key) == 2 and all("second" in t for t in by_key)
    by_model = filtered(model="gpt-4.1-mini")
    assert len(by_model) == 1 and "gpt-4.1-mini" in by_model[0]
    errors = filtered(status="error")
    assert len(errors) == 1 and "no-such-model" in errors[0] and "404" in errors[0]
    assert len(filtered(key="second", status="ok")) == 1
    assert len(filtered(channel="mock-openai", key="first")) == 50
    assert filtered(model="nothing-like-this") == [] and tab.page.is_visible("#request-list .empty")
    # The CSV link carries the filter.
    filtered(key="second")
    href = tab.page.get_attribute("#requests-csv", "href") or ""
    assert f"key_id={second['id']}" in href
    csv = tab.page.evaluate("async (u) => (await fetch(u)).text()", href)
    assert len(csv.strip().splitlines()) == 3  # header + the two calls of the second key


def test_usage_page_without_the_chart_library_still_shows_tables(tab: Tab, env: Env) -> None:
    tab.page.route("**/console/vendor/**", lambda route: route.fulfill(status=404, body="missing"))
    tab.sign_in(env.admin_email, ADMIN_PASSWORD)
    tab.open("usage", "#usage-totals")
    tab.page.wait_for_function("() => document.getElementById('charts-status').textContent.includes('unavailable')")
    assert tab.page.is_hidden(".charts")
    assert tab.page.locator("#usage-totals, #usage-latency").count() == 2


def test_token_edit_disable_and_delete(tab: Tab, env: Env) -> None:
    email = create_user(env.admin)
    tab.sign_in(email)
    _create_token(tab, "editable")
    row = _row(tab, "#token-list", "editable")
    row.locator("button[data-action=edit]").click()
    tab.page.fill("#edit-token input[name=models]", "gpt-4.1, claude-*")
    tab.page.fill("#edit-token input[name=rpm]", "30")
    tab.page.fill("#edit-token input[name=expires_at]", "2030-01-02T03:04")
    expiry = tab.page.evaluate("() => new Date('2030-01-02T03:04').getTime() / 1000")
    tab.page.click("#edit-token button[type=submit]")
    tab.page.wait_for_function("() => !document.getElementById('edit-token')")
    session = signed_in(env.gw.url, email)
    key = next(k for k in session.ok(session.get("/keys"))["data"] if k["name"] == "editable")
    assert key["models"] == ["gpt-4.1", "claude-*"] and key["rpm"] == 30 and key["expires_at"] == expiry
    assert "2030-01-02" in (_row(tab, "#token-list", "editable").text_content() or "")
    row.locator("button[data-action=toggle]").click()
    _row(tab, "#token-list", "editable").locator(".badge.bad").wait_for()
    assert next(k for k in session.ok(session.get("/keys"))["data"] if k["id"] == key["id"])["disabled"] is True
    delete = _row(tab, "#token-list", "editable").locator("button[data-action=delete]")
    delete.click()
    delete.click()
    tab.page.wait_for_function("() => !document.querySelector('#token-list')?.textContent.includes('editable')")
    assert all(k["id"] != key["id"] for k in session.ok(session.get("/keys"))["data"])


# -- wallet -------------------------------------------------------------------------------------------------------


def test_redeem_a_code_changes_the_balance(tab: Tab, env: Env) -> None:
    tab.sign_in(env.admin_email, ADMIN_PASSWORD)
    tab.open("admin/codes", "#create-codes")
    tab.page.fill("#create-codes input[name=count]", "2")
    tab.page.fill("#create-codes input[name=amount_usd]", "7.5")
    tab.page.click("#create-codes button[type=submit]")
    tab.page.wait_for_selector("#code-batch code.redeem-code")
    codes = tab.page.locator("#code-batch code.redeem-code").all_text_contents()
    assert len(codes) == 2 and len(set(codes)) == 2
    tab.shot("admin-codes")
    tab.page.click("#logout")
    tab.page.wait_for_selector("#signin-email")

    email = create_user(env.admin)
    tab.sign_in(email)
    tab.open("wallet", "#redeem-form")
    member = signed_in(env.gw.url, email)
    before = member.ok(member.get("/me"))["balance_usd"]
    tab.page.fill("#redeem-code", codes[0])
    tab.page.click("#redeem-form button[type=submit]")
    tab.page.wait_for_function("() => document.getElementById('redeem-result').className === 'ok'")
    assert tab.page.text_content("#wallet-balance") == f"${before + 7.5:.2f}"
    assert tab.page.text_content("#who-balance") == f"${before + 7.5:.2f}"
    assert _row(tab, "#ledger", "redeem").count() == 1
    tab.page.fill("#redeem-code", codes[0])
    tab.page.click("#redeem-form button[type=submit]")
    tab.page.wait_for_function("() => document.getElementById('redeem-result').className === 'error'")
    assert "already" in (tab.page.text_content("#redeem-result") or "")
    assert member.ok(member.get("/me"))["balance_usd"] == pytest.approx(before + 7.5)
    tab.shot("wallet")


# -- playground ---------------------------------------------------------------------------------------------------

RECORD_STATES = """() => {
  window.__states = [];
  const thread = document.getElementById('pg-thread');
  new MutationObserver(() => {
    const el = thread.querySelector('.msg-assistant:last-child .msg-content');
    const text = el ? el.textContent : '';
    if (text && window.__states[window.__states.length - 1] !== text) window.__states.push(text);
  }).observe(thread, {subtree: true, childList: true, characterData: true});
}"""


def _send(tab: Tab, model: str, prompt: str) -> None:
    tab.page.fill("#pg-model", model)
    tab.page.fill("#pg-prompt", prompt)
    tab.page.click("#pg-send")


def test_playground_streams_text_progressively(tab: Tab, env: Env, mocks: MockUpstreams) -> None:
    full = "alpha beta gamma delta epsilon"
    mocks.push("openai", ScriptedReply(text=full, chunks=5, chunk_interval_s=0.25))
    tab.sign_in(_funded_member(env))
    tab.open("playground", "#pg-form")
    tab.page.evaluate(RECORD_STATES)
    _send(tab, "gpt-4.1", "say five words")
    # An intermediate state: some of the text is there, not all of it.
    tab.page.wait_for_function(
        "(full) => { const el = document.querySelector('.msg-assistant .msg-content');"
        " const t = el ? el.textContent : ''; return t.length > 0 && t.length < full.length && full.startsWith(t); }",
        arg=full,
    )
    tab.page.wait_for_selector(".msg-assistant.msg-done")
    assert tab.page.text_content(".msg-assistant .msg-content") == full
    states: list[str] = tab.page.evaluate("() => window.__states")
    assert states[-1] == full and len(states) >= 3, states
    assert all(full.startswith(s) for s in states) and states == sorted(states, key=len)
    assert mocks.last_request("openai").body["stream"] is True
    assert "in / " in (tab.page.text_content(".msg-assistant .msg-meta") or "")
    # A second turn, not streamed: the history goes along, and the answer comes with its cost.
    mocks.push("openai", ScriptedReply(text="second answer"))
    tab.page.uncheck("#pg-stream")
    _send(tab, "gpt-4.1", "and again")
    tab.page.wait_for_selector(".msg-assistant.msg-done >> nth=1")
    assert tab.page.locator(".msg-assistant .msg-content").nth(1).text_content() == "second answer"
    body = mocks.last_request("openai").body
    assert not body.get("stream")
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "say five words"),
        ("assistant", full),
        ("user", "and again"),
    ]
    assert "$" in (tab.page.locator(".msg-assistant .msg-meta").nth(1).text_content() or "")
    tab.shot("playground")


def test_playground_think_model_streams_reasoning(tab: Tab, env: Env, mocks: MockUpstreams) -> None:
    reasoning = "First multiply six by seven, then check the product."
    mocks.push("openai", ScriptedReply(text="42", reasoning=reasoning, chunks=4, chunk_interval_s=0.2))
    tab.sign_in(_funded_member(env))
    tab.open("playground", "#pg-form")
    _send(tab, "think:o3", "What is 6 * 7?")
    # The reasoning panel fills before the answer does.
    tab.page.wait_for_function(
        "() => { const r = document.querySelector('.msg-assistant .reasoning-text');"
        " const c = document.querySelector('.msg-assistant .msg-content');"
        " return r && r.textContent.length > 0 && c.textContent === ''; }"
    )
    tab.page.wait_for_selector(".msg-assistant.msg-done")
    assert tab.page.text_content(".msg-assistant .reasoning-text") == reasoning
    assert tab.page.text_content(".msg-assistant .msg-content") == "42"
    tab.shot("playground-think")


def test_playground_heavy_model_streams_the_agents_progress(tab: Tab, env: Env, mocks: MockUpstreams) -> None:
    mocks.push("openai", *[ScriptedReply(text="6 * 7 = 42\nFinal answer: 42") for _ in range(8)])
    tab.sign_in(_funded_member(env))
    tab.open("playground", "#pg-form")
    _send(tab, "heavy:gpt-4.1", "What is 6 * 7?")
    tab.page.wait_for_selector(".msg-assistant.msg-done")
    agents = len(mocks.requests("openai"))
    progress = tab.page.text_content(".msg-assistant .reasoning-text") or ""
    assert agents >= 2 and progress.count("done:") == agents, progress
    assert f"Vote: 42 ({agents}/{agents} agents)" in progress
    assert "42" in (tab.page.text_content(".msg-assistant .msg-content") or "")


def test_playground_deepsearch_shows_progress_and_citations(tab: Tab, env: Env, mocks: MockUpstreams) -> None:
    report = "Zorblax has 7,200 residents [1]. See also https://example.org/zorblax for the census.\nKey citations: [1]"
    mocks.push(
        "openai",
        ScriptedReply(text="- Zorblax population"),
        ScriptedReply(text="FINDINGS:\n- 7,200 residents in 2024 [1]\nCONFLICTS:\nnone\nNEXT QUERIES:\nnone"),
        ScriptedReply(text=report, chunks=6),
    )
    tab.sign_in(_funded_member(env))
    tab.open("playground", "#pg-form")
    _send(tab, "deepsearch:gpt-4.1", "How many people live in Zorblax?")
    tab.page.wait_for_selector(".msg-assistant.msg-done", timeout=60_000)
    assert "Searching: Zorblax population" in (tab.page.text_content(".msg-assistant .reasoning-text") or "")
    content = tab.page.text_content(".msg-assistant .msg-content") or ""
    assert content.startswith("Zorblax has 7,200 residents [1].")
    link = tab.page.locator(".msg-assistant .msg-content a:not(.citation)")
    assert link.count() == 1 and link.get_attribute("href") == "https://example.org/zorblax"
    assert link.get_attribute("rel") == "noopener noreferrer"
    sources = tab.page.locator(".msg-assistant .sources li.source").all_text_contents()
    assert sources and all(re.search(r"corpus://zorblax", s) for s in sources), sources
    # Each [n] the gateway annotated links to its entry in the sources list; following it stays on the page.
    cites = tab.page.locator(".msg-assistant .msg-content a.citation")
    assert cites.count() >= 1 and cites.first.text_content() == "[1]"
    target = cites.first.get_attribute("href") or ""
    assert target.startswith("#") and "corpus://zorblax" in (tab.page.text_content(target) or "")
    cites.first.click()
    assert tab.page.locator(".msg-assistant.msg-done").count() == 1
    tab.shot("playground-deepsearch")


# -- admin pages: every page renders (screenshots), members are kept out -------------------------------------------

ADMIN_PAGES = {
    "channels": "#channel-list table",
    "admin/users": "#user-list table",
    "admin/teams": "#team-list",
    "admin/groups": "#group-list table",
    "admin/codes": "#code-list",
    "models": "#model-list table",
}


def test_admin_pages_render_and_channel_test_button(tab: Tab, env: Env) -> None:
    tab.sign_in(env.admin_email, ADMIN_PASSWORD)
    for path, ready in ADMIN_PAGES.items():
        tab.open(path, ready)
        tab.shot(path.replace("/", "-"))
    tab.open("channels", "#channel-list table")
    row = _row(tab, "#channel-list", "mock-openai")
    assert "closed" in (row.text_content() or "")
    row.locator("button[data-upstream]").click()
    row.locator(".test-result.ok, .test-result.error").wait_for()
    assert (row.locator(".test-result").text_content() or "").startswith("ok")
    tab.open("models", "#model-list table")
    assert _row(tab, "#model-list", "gpt-4.1").count() >= 1


def test_admin_pages_make_a_group_a_team_and_a_member_who_sees_team_balance_and_group_prices(
    tab: Tab, env: Env
) -> None:
    tab.sign_in(env.admin_email, ADMIN_PASSWORD)
    group = "gold" + uuid.uuid4().hex[:6]
    tab.open("admin/groups", "#create-group")
    tab.page.fill("#create-group input[name=name]", group)
    tab.page.fill("#create-group input[name=multiplier]", "2")
    tab.page.click("#create-group button[type=submit]")
    _row(tab, "#group-list", group).wait_for()
    team = f"team {XSS} {uuid.uuid4().hex[:6]}"
    tab.open("admin/teams", "#create-team")
    tab.page.fill("#create-team input[name=name]", team)
    tab.page.click("#create-team button[type=submit]")
    _row(tab, "#team-list", team).wait_for()
    email = f"teammate-{uuid.uuid4().hex[:8]}@example.com"
    tab.open("admin/users", "#create-user")
    tab.page.fill("#create-user input[name=email]", email)
    tab.page.fill("#create-user input[name=password]", MEMBER_PASSWORD)
    tab.page.select_option("#create-user select[name=team_id]", label=team)
    tab.page.select_option("#create-user select[name=group]", value=group)
    tab.page.click("#create-user button[type=submit]")
    row = _row(tab, "#user-list", email)
    row.wait_for()
    assert team in (row.text_content() or "") and group in (row.text_content() or "")
    tab.open("admin/teams", "#team-list table")
    row = _row(tab, "#team-list", team)
    assert (row.locator("td").nth(2).text_content() or "") == "1"  # members
    row.get_by_role("button", name="Top up").click()
    tab.page.fill("#team-panel input[type=number]", "3")
    tab.page.fill("#team-panel input:not([type])", "welcome credit")
    tab.page.click("#team-panel button[type=submit]")
    tab.page.wait_for_function(
        "(t) => [...document.querySelectorAll('#team-list tbody tr')].some("
        "(r) => r.textContent.includes(t) && r.textContent.includes('$3.00'))",
        arg=team,
    )
    assert tab.dialogs == []
    tab.page.click("#logout")

    tab.sign_in(email)
    assert tab.page.text_content("#overview-balance") == "$3.00"
    tab.open("wallet", "#ledger table")
    assert tab.page.text_content(".stats .stat-label") == "Team balance"
    assert "welcome credit" in (tab.page.text_content("#ledger") or "")
    tab.open("models", "#model-list table")
    assert "\u00d72 applied" in (tab.page.text_content("#model-multiplier") or "")
    cells = _row(tab, "#model-list", "gpt-4.1").first.locator("td").all_text_contents()
    assert cells[0] == "gpt-4.1" and cells[2] == "$4" and cells[4] == "$16", cells  # 2 x $2 and 2 x $8 per Mtok


def _cells(row: Any) -> list[str]:
    return [c.strip() for c in row.locator("td").all_text_contents()]


def test_admin_edits_tops_up_and_deletes_users_and_teams(tab: Tab, env: Env) -> None:
    """The side panel's forms (edit, top up) save and close, a refused one keeps the panel open with the API's
    error, and Delete asks once more before it deletes."""
    tab.sign_in(env.admin_email, ADMIN_PASSWORD)
    email = create_user(env.admin)
    tab.open("admin/users", "#user-list table")
    row = _row(tab, "#user-list", email)
    row.get_by_role("button", name="Edit").click()
    tab.page.select_option("#user-panel select >> nth=0", value="admin")  # the role
    tab.page.click("#user-panel button[type=submit]")
    tab.page.wait_for_function("() => !document.querySelector('#user-panel form')")  # saved: the panel closed
    row.locator("span.badge", has_text="admin").wait_for()
    row.get_by_role("button", name="Top up").click()
    tab.page.fill("#user-panel input[type=number]", "0")  # refused by the API: a top-up moves money
    tab.page.fill("#user-panel input:not([type])", "take it back")
    tab.page.click("#user-panel button[type=submit]")
    tab.page.wait_for_selector(".toast-error")
    assert tab.page.locator("#user-panel form").count() == 1  # still open, to correct it
    tab.page.fill("#user-panel input[type=number]", "2.5")
    tab.page.click("#user-panel button[type=submit]")
    tab.page.wait_for_function("() => !document.querySelector('#user-panel form')")
    assert _cells(row)[4] == "$2.50"
    delete = row.get_by_role("button", name="Delete")
    delete.click()
    assert (delete.text_content() or "") == "Really delete?" and row.count() == 1  # armed, nothing deleted yet
    delete.click()
    tab.page.wait_for_function(
        "(e) => ![...document.querySelectorAll('#user-list tbody tr')].some((r) => r.textContent.includes(e))",
        arg=email,
    )
    assert all(u["email"] != email for u in env.admin.get("/admin/users").json()["data"])

    team, renamed = f"team {uuid.uuid4().hex[:6]}", f"renamed {uuid.uuid4().hex[:6]}"
    tab.open("admin/teams", "#create-team")
    tab.page.fill("#create-team input[name=name]", team)
    tab.page.click("#create-team button[type=submit]")
    _row(tab, "#team-list", team).get_by_role("button", name="Edit").click()
    tab.page.fill("#team-panel input:not([type])", renamed)
    tab.page.click("#team-panel button[type=submit]")
    row = _row(tab, "#team-list", renamed)
    row.wait_for()
    assert tab.page.locator("#team-panel form").count() == 0
    delete = row.get_by_role("button", name="Delete")
    delete.click()
    delete.click()
    row.wait_for(state="detached")
    assert tab.dialogs == []


def test_member_is_kept_out_of_admin_pages_and_apis(tab: Tab, env: Env) -> None:
    email = create_user(env.admin)
    tab.sign_in(email)
    assert tab.page.locator("#nav .nav-admin").count() == 0
    for path in ADMIN_PAGES:
        if path == "models":
            continue
        tab.page.goto("/console/" + path)
        tab.page.wait_for_function("() => location.pathname === '/console'")
        tab.page.wait_for_selector(".toast-error")
        assert "admins only" in (tab.page.text_content("#toast") or "")
    member = signed_in(env.gw.url, email)
    for path in ("/admin/users", "/admin/teams", "/admin/groups", "/admin/codes", "/admin/channels"):
        r = member.get(path)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required", (path, r.text)
    r = member.post("/admin/codes", {"count": 1, "amount_usd": 100})
    assert r.status_code == 403
    r = member.post("/admin/users", {"email": "x@example.com", "password": MEMBER_PASSWORD, "role": "admin"})
    assert r.status_code == 403
    # The page's own fetch with the browser's session gets the same answer.
    status = tab.page.evaluate("async () => (await fetch('/console/api/admin/users')).status")
    assert status == 403


# -- XSS ----------------------------------------------------------------------------------------------------------


def test_key_and_model_names_are_rendered_as_text(tab: Tab, env: Env, mocks: MockUpstreams) -> None:
    email = _funded_member(env)
    tab.sign_in(email)
    secret = _create_token(tab, XSS, models=f"gpt-4.1, {XSS}")
    assert tab.page.locator("#token-list .key-name", has_text=XSS).count() == 1
    assert XSS in (tab.page.text_content("#token-list") or "")
    client = openai.OpenAI(base_url=env.gw.url + "/v1", api_key=secret, max_retries=0, timeout=30)
    mocks.push("openai", ScriptedReply(text="fine"))
    client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model=XSS, messages=[{"role": "user", "content": "hi"}])
    session = signed_in(env.gw.url, email)
    wait_until(lambda: len(session.ok(session.get("/requests"))["data"]) >= 2, deadline=10, what="both requests logged")
    tab.open("requests", "#request-list table")
    assert tab.page.locator("#request-list .key-name", has_text=XSS).count() == 2
    assert tab.page.locator("#request-list .model-name", has_text=XSS).count() == 1  # the failed call's model
    tab.open("usage", "#usage-totals")
    tab.page.select_option("#usage-by", "key")
    tab.page.wait_for_function("(x) => document.getElementById('usage-totals').textContent.includes(x)", arg=XSS)
    # Nothing the payload would have made: no <img> anywhere in the app, no dialog.
    assert tab.page.locator("#app img").count() == 0
    tab.open("playground", "#pg-form")
    tab.page.fill("#pg-model", XSS)
    tab.page.fill("#pg-prompt", "hi")
    tab.page.click("#pg-send")
    tab.page.wait_for_selector(".msg-assistant.msg-failed")
    assert tab.page.locator(".msg-assistant .model-name", has_text=XSS).count() == 1
    assert tab.page.locator("#app img").count() == 0
    assert tab.dialogs == []
