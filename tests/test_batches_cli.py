"""``omnirelay batches list|show|watch`` on the database of a running gateway: watch follows a real batch to its
end, list and show read the same numbers the API reports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from omnirelay.commands import app
from tests.gateway import ROOT
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams
from tests.state_helpers import Admin, backend, start_gateway, state_config


def test_watch_list_show(mocks: MockUpstreams, tmp_path: Path) -> None:
    n = 30
    with backend("sqlite", tmp_path) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        cfg["batches"] = {"poll_s": 0.1, "concurrency": 4}
        gw = start_gateway(cfg, tmp_path / "gw", b)
        try:
            mocks.push("openai", *[ScriptedReply(echo=True, delay_s=0.05) for _ in range(n)])
            _kid, secret = Admin(gw.url).create_key()
            client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
            lines = [
                {"custom_id": f"w{i}", "method": "POST", "url": "/v1/chat/completions",
                 "body": {"model": "gpt-4.1", "messages": [{"role": "user", "content": f"w{i}"}], "max_tokens": 9}}
                for i in range(n)
            ]  # fmt: skip
            data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
            f = client.files.create(file=("w.jsonl", io.BytesIO(data)), purpose="batch")
            batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
            env = {**os.environ, **b.env, "COLUMNS": "200"}
            watched = subprocess.run(
                [sys.executable, "-m", "omnirelay", "batches", "watch", batch.id, "--interval", "0.1"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert watched.returncode == 0, watched.stderr
            assert "completed" in watched.stdout and f"{n}/{n}" in watched.stdout
            assert "req/s" in watched.stdout and "$0.0" in watched.stdout
            final = client.batches.retrieve(batch.id)
            assert final.status == "completed"  # watch ended when the batch did
            runner = CliRunner(env=b.env)
            listed = runner.invoke(app, ["batches", "list", "--json"])
            assert listed.exit_code == 0, listed.output
            (row,) = [r for r in json.loads(listed.output) if r["id"] == batch.id]
            assert row["status"] == "completed" and row["total"] == n and row["done"] == n
            assert row["cost"] == pytest.approx((12 * 2.0 + 7 * 8.0) / 1e6 * 0.5 * n, abs=1e-12)
            shown = runner.invoke(app, ["batches", "show", batch.id])
            assert shown.exit_code == 0 and json.loads(shown.output)["output_file_id"] == final.output_file_id
            missing = runner.invoke(app, ["batches", "show", "batch_nope"])
            assert missing.exit_code == 1
        finally:
            gw.stop()
