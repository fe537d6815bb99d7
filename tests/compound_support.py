"""Shared pieces of the compound-model tests: a gateway with keys (for exact charges) over the mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai

from tests.gateway import Gateway
from tests.mocks.server import MockUpstreams
from tests.state_helpers import Admin, backend, start_gateway, state_config

GPT_IN, GPT_OUT = 2.0 / 1e6, 8.0 / 1e6  # gpt-4.1 list prices per token


def gpt_cost(calls: int, inp: int = 12, out: int = 7) -> float:
    return calls * (inp * GPT_IN + out * GPT_OUT)


class CompoundEnv:
    def __init__(self, gw: Gateway, corpus: Path | None = None) -> None:
        self.gw = gw
        self.admin = Admin(gw.url)
        self.kid, self.secret = self.admin.create_key(credit=10.0)
        self.corpus = corpus

    def oai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=self.secret, max_retries=0, timeout=60)

    def claude(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gw.url, api_key=self.secret, max_retries=0, timeout=60)

    def record(self, request_id: str) -> dict[str, Any]:
        rows = [r for r in self.admin.wait_usage(1, key=self.kid) if r["request_id"] == request_id]
        assert len(rows) == 1, rows
        return rows[0]


def compound_gateway(
    mocks: MockUpstreams, workdir: Path, compound: dict[str, Any] | None = None
) -> Iterator[CompoundEnv]:
    with backend("sqlite", workdir) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        cfg["extra"] = {"compound": compound or {}}
        gw = start_gateway(cfg, workdir, b)
        try:
            yield CompoundEnv(gw)
        finally:
            gw.stop()
