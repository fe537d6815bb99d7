from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.gateway import Gateway, mock_config
from tests.mocks.faults import FaultServer
from tests.mocks.server import MockUpstreams

# The family each test model name is served by (see tests.gateway.mock_config).
UPSTREAM_MODELS = {"openai": "gpt-4.1", "anthropic": "claude-sonnet-4-20250514", "gemini": "gemini-2.5-pro"}


@pytest.fixture(scope="session")
def mocks() -> Iterator[MockUpstreams]:
    m = MockUpstreams()
    m.start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    """The fault-injecting upstream of the routing tests (tests/mocks/faults.py), one per test module."""
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_mocks(request: pytest.FixtureRequest) -> None:
    if "mocks" in request.fixturenames:
        request.getfixturevalue("mocks").reset()


@pytest.fixture(scope="session")
def gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One omnirelay process for the session, routed to the three mock upstreams."""
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    gw = Gateway(cfg, tmp_path_factory.mktemp("gateway")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def oai(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


@pytest.fixture()
def claude(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="sk-test", max_retries=0, timeout=30)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path
