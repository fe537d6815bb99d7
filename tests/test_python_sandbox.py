"""The ``python`` tool as an attacker uses it: the scripted "model" asks the gateway to run hostile programs,
and none of them reaches a secret, a gateway file, the host's filesystem, processes or network; the gateway
survives, nothing outlives the wall-time limit, output and disk use stay capped. The tool is off unless the
config enables it, and refused with a clear 400 when disabled or when no sandbox works on the host."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.compound_support import CompoundEnv
from tests.gateway import ROOT, Gateway
from tests.mocks.script import ScriptedReply, ScriptedToolCall
from tests.mocks.server import MockUpstreams
from tests.state_helpers import ADMIN_KEY, backend, state_config

UPSTREAM_SECRET = "sk-env-upstream-secret-" + uuid.uuid4().hex[:10]  # in the gateway's environment only
CANARY = "canary-" + uuid.uuid4().hex  # another variable of the gateway's environment
WALL = 2.0
TMP_MB = 4
MAX_OUTPUT = 3000
QUESTION: Any = [{"role": "user", "content": "Run it."}]
PYTHON = {"omnirelay": {"tools": ["python"]}}

# Spawns a process without the subprocess module (no audit event): _posixsubprocess.fork_exec on CPython 3.11.
FORK_EXEC = r"""
import _posixsubprocess, os
def spawn(argv, setsid=False):
    r, w = os.pipe()
    er, ew = os.pipe()
    args = [[os.fsencode(a) for a in argv], [os.fsencode(argv[0])], True, (), None, None,
            -1, -1, r, w, -1, w, er, ew, True, setsid, -1, None, None, None, -1, None]
    try:
        pid = _posixsubprocess.fork_exec(*args, True)
    except TypeError:
        pid = _posixsubprocess.fork_exec(*args)
    os.close(w)
    os.close(ew)
    return pid, r
def run(argv):
    pid, r = spawn(argv)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace")
"""


class SandboxEnv(CompoundEnv):
    def __init__(self, gw: Gateway, mocks: MockUpstreams, database: Path) -> None:
        super().__init__(gw)
        self.mocks = mocks
        self.database = database

    def gateway_pids(self) -> list[int]:
        """The gateway's processes on the host: its main process and the workers of its process group."""
        assert self.gw.proc is not None
        group = os.getpgid(self.gw.proc.pid)
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getpgid(int(entry)) == group:
                        pids.append(int(entry))
                except ProcessLookupError:
                    pass
        return sorted(pids)

    def run(self, code: str, client: openai.OpenAI | None = None) -> tuple[str, str]:
        """Have the model run ``code``: the tool result the model got back, and everything the client saw."""
        call = ScriptedToolCall(name="python", arguments=json.dumps({"code": code}), id="call_py_1")
        self.mocks.push("openai", ScriptedReply(text="", tool_calls=[call], finish="tool_calls"))
        self.mocks.push("openai", ScriptedReply(text="Done."))
        resp = (client or self.oai()).chat.completions.create(model="gpt-4.1", messages=QUESTION, extra_body=PYTHON)
        follow = self.mocks.last_request("openai").body["messages"]
        results = [m["content"] for m in follow if m["role"] == "tool"]
        assert len(results) == 1, follow
        seen = resp.model_dump_json()
        return str(results[0]), seen


def _gateway_env(mocks: MockUpstreams, workdir: Path, python: dict[str, Any]) -> Iterator[SandboxEnv]:
    with backend("sqlite", workdir) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        openai_upstream = cfg["upstreams"][0]
        del openai_upstream["api_key"]
        openai_upstream["api_key_env"] = "SANDBOX_TEST_OPENAI_KEY"
        cfg["extra"] = {"compound": {"python": python}}
        env = {**b.env, "SANDBOX_TEST_OPENAI_KEY": UPSTREAM_SECRET, "SANDBOX_TEST_CANARY": CANARY}
        gw = Gateway(cfg, workdir, env=env).start()
        try:
            yield SandboxEnv(gw, mocks, workdir / "shared.db")
        finally:
            gw.stop(kill=True)


@pytest.fixture(scope="module")
def sbx(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEnv]:
    python = {"enabled": True, "wall_seconds": WALL, "tmp_mb": TMP_MB, "max_output_chars": MAX_OUTPUT}
    yield from _gateway_env(mocks, tmp_path_factory.mktemp("sandbox"), python)


def _secrets(env: SandboxEnv) -> list[str]:
    return [UPSTREAM_SECRET, CANARY, ADMIN_KEY, env.secret, "sk-ant-mock-secret", "gm-mock-secret"]


def _assert_healthy(env: SandboxEnv) -> None:
    assert env.gw.proc is not None and env.gw.proc.poll() is None, env.gw.log()
    assert httpx.get(env.gw.url + "/health", timeout=5).status_code == 200
    env.mocks.push("openai", ScriptedReply(text="still here"))
    reply = env.oai().chat.completions.create(model="gpt-4.1", messages=QUESTION)
    assert reply.choices[0].message.content == "still here"


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def _rss_peak_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total


# -- secrets and gateway files -------------------------------------------------------------------------------


def test_environ_and_cmdline_of_every_visible_process_hold_no_secret(sbx: SandboxEnv) -> None:
    pids = sbx.gateway_pids()
    # The program looks for the secrets itself (everything it read, not only what fits in the output cap)...
    needles = [*_secrets(sbx), str(sbx.gw.config_path)]
    code = f"""
import os
print("visible pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), flush=True)
for pid in ["1", "self", *map(str, {pids!r}), *[p for p in os.listdir("/proc") if p.isdigit()]]:
    for what in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{{pid}}/{{what}}", "rb").read().replace(b"\\0", b" ").decode()
        except OSError as exc:
            print(pid, what, "error", type(exc).__name__)
            continue
        for n, needle in enumerate({needles!r}):
            if needle in data:
                print("FOUND", n, "in", pid, what)
        print(pid, what, "read", len(data), "characters")
"""
    result, seen = sbx.run(code)
    assert "visible pids" in result  # the program ran
    assert "FOUND" not in result, result
    # ...and none reaches the model or the client, not even the config's path (the gateway's argv).
    for secret in needles:
        assert secret not in result and secret not in seen


def test_config_file_database_and_shadow_are_not_readable(sbx: SandboxEnv) -> None:
    targets = [str(sbx.gw.config_path), str(sbx.database), "/etc/shadow", "/etc/passwd", str(ROOT / "pyproject.toml")]
    needles = [*_secrets(sbx), "SQLite format 3"]
    code = f"""
for path in {targets!r}:
    try:
        data = open(path, "rb").read().decode(errors="replace")
    except OSError as exc:
        print("refused", path, type(exc).__name__)
        continue
    print("READ", path, len(data), "characters")
    for n, needle in enumerate({needles!r}):
        if needle in data:
            print("FOUND", n, "in", path)
"""
    result, seen = sbx.run(code)
    assert result.count("refused") == len(targets), result
    assert "READ" not in result and "FOUND" not in result
    for secret in _secrets(sbx):
        assert secret not in result and secret not in seen


# -- the host's filesystem -----------------------------------------------------------------------------------


def test_writes_outside_the_sandbox_never_reach_the_host(sbx: SandboxEnv, tmp_path: Path) -> None:
    targets = [tmp_path / "escape-open.txt", tmp_path / "escape-osopen.txt", ROOT / f"escape-{uuid.uuid4().hex}"]
    code = f"""
import os, __main__
__main__._root = ""
os.path.realpath = lambda p, **k: "/tmp/x"
a, b, c = {[str(t) for t in targets]!r}
for attempt in (lambda: open(a, "w").write("x"),
                lambda: os.write(os.open(b, os.O_CREAT | os.O_WRONLY, 0o644), b"x"),
                lambda: (os.makedirs(os.path.dirname(c), exist_ok=True), open(c, "w").write("x"))):
    try:
        attempt()
        print("wrote")
    except OSError as exc:
        print("refused", type(exc).__name__)
"""
    result, _ = sbx.run(code)
    assert "refused" in result or "wrote" in result, result  # the program ran
    for target in targets:
        assert not target.exists(), f"{target} was written on the host: {result}"


def test_tmp_dir_has_a_total_size_cap(sbx: SandboxEnv) -> None:
    code = f"""
import os
written = 0
for where in (".", "/dev/shm", "/dev", "/"):
    try:
        for n in range({TMP_MB * 4}):
            with open(f"{{where}}/fill{{n}}", "wb") as f:
                f.write(b"x" * 2**20)
            written += 1
    except OSError as exc:
        print("stopped", where, exc.errno)
print("written MB", written)
"""
    result, _ = sbx.run(code)
    line = [x for x in result.splitlines() if x.startswith("written MB")]
    assert line, result
    assert int(line[0].split()[-1]) <= TMP_MB, result
    assert "stopped . 28" in result  # ENOSPC: the tmpfs is full, however many files


# -- processes and network -----------------------------------------------------------------------------------


def test_fork_exec_children_are_sandboxed_too(sbx: SandboxEnv, tmp_path: Path) -> None:
    assert sbx.gw.proc is not None
    gw_pid = sbx.gw.proc.pid
    marker = tmp_path / "spawned-wrote-this"
    shell = (
        f"echo environ-hits:$(tr '\\0' '\\n' < /proc/{gw_pid}/environ | grep -c SANDBOX_TEST_CANARY); "
        f"exec 3<>/dev/tcp/127.0.0.1/{sbx.gw.port} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3; "
        f"echo spawned > {marker}; echo child-ran"
    )
    code = FORK_EXEC + f"print(run(['/bin/bash', '-c', {shell!r}]))"
    result, seen = sbx.run(code)
    assert "child-ran" in result, result  # the child ran, inside the sandbox
    assert "environ-hits:1" not in result  # the gateway's environment is not there
    assert "HTTP/1." not in result  # the gateway's port is not reachable
    assert not marker.exists()
    for secret in _secrets(sbx):
        assert secret not in result and secret not in seen


def test_no_network_to_the_gateway_or_anywhere(sbx: SandboxEnv) -> None:
    code = f"""
import socket
for host, port in (("127.0.0.1", {sbx.gw.port}), ("127.0.0.1", 5432), ("127.0.0.1", 6379)):
    try:
        socket.create_connection((host, port), timeout=1).close()
        print("connected", port)
    except OSError as exc:
        print("refused", port, type(exc).__name__)
"""
    result, _ = sbx.run(code)
    assert result.count("refused") == 3 and "connected" not in result, result


def test_a_setsid_child_does_not_outlive_the_wall_limit(sbx: SandboxEnv) -> None:
    running, finished = "sbx-run-" + uuid.uuid4().hex, "sbx-fin-" + uuid.uuid4().hex
    sleeper = "import time; time.sleep(60)"
    # One program sleeps past the wall limit after starting a daemon; the other starts one and exits at once.
    results = {}
    for marker, then in (
        (running, "print('started', flush=True); import time; time.sleep(60)"),
        (finished, "print('started')"),
    ):
        daemon = f"spawn(['/usr/bin/python3', '-c', {sleeper!r}, {marker!r}], setsid=True)\n"
        started = time.monotonic()
        result, _ = sbx.run(FORK_EXEC + daemon + then)
        assert time.monotonic() - started < WALL + 5, result
        deadline = time.monotonic() + 2.0  # the kernel tears the PID namespace down right after its pid 1 dies
        while _host_processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _host_processes_with(marker) == [], f"a sandboxed daemon outlived its program: {result}"
        assert "started" in result, result
        results[marker] = result
    assert "[killed: wall-time limit]" in results[running]


def test_huge_output_is_cut_at_the_cap_and_the_gateway_stays_small(sbx: SandboxEnv) -> None:
    pids = sbx.gateway_pids()
    before = _rss_peak_kb(pids)
    code = "import sys\nchunk = b'x' * 2**20\nfor _ in range(800):\n    sys.stdout.buffer.write(chunk)\n"
    started = time.monotonic()
    result, _ = sbx.run(code)
    grown_mb = (_rss_peak_kb(pids) - before) / 1024
    assert grown_mb < 64, f"the gateway's peak RSS grew by {grown_mb:.0f} MB"
    assert time.monotonic() - started < WALL + 5
    # A run stopped at the cap is an error result: OpenAI-format upstreams see it prefixed "Error: ".
    output = result.removeprefix("Error: ")
    assert output.startswith("x" * MAX_OUTPUT) and "x" * (MAX_OUTPUT + 1) not in output
    assert "[output truncated" in output


def test_killing_the_gateway_from_the_sandbox_fails(sbx: SandboxEnv) -> None:
    pids = sbx.gateway_pids()
    code = f"""
import os, signal
for pid in {pids!r}:
    try:
        os.kill(pid, signal.SIGKILL)
        print("signalled", pid)
    except OSError as exc:
        print("refused", pid, type(exc).__name__)
"""
    result, _ = sbx.run(code)
    assert "refused" in result or "signalled" in result, result
    _assert_healthy(sbx)
    assert sbx.gateway_pids() == pids


# -- off by default, refused when no sandbox works -----------------------------------------------------------


@pytest.fixture(scope="module")
def disabled(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEnv]:
    yield from _gateway_env(mocks, tmp_path_factory.mktemp("sandbox-off"), {})


@pytest.fixture(scope="module")
def unavailable(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEnv]:
    yield from _gateway_env(
        mocks, tmp_path_factory.mktemp("sandbox-none"), {"enabled": True, "bwrap": "/nonexistent/bwrap"}
    )


def _assert_refused(env: SandboxEnv, why: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        env.oai().chat.completions.create(model="gpt-4.1", messages=QUESTION, extra_body=PYTHON)
    body: Any = info.value.body
    assert body["type"] == "invalid_request_error" and why in body["message"], body
    code_execution = [{"type": "code_execution_20250825", "name": "code_execution"}]
    with pytest.raises(anthropic.BadRequestError) as ainfo:
        env.claude().messages.create(
            model="gpt-4.1", max_tokens=50, messages=QUESTION, extra_body={"tools": code_execution}
        )
    error = ainfo.value.response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert why in error["error"]["message"]
    assert env.mocks.requests("openai") == []  # refused before any model call


def test_python_is_off_unless_the_config_enables_it(disabled: SandboxEnv) -> None:
    _assert_refused(disabled, "the python tool is disabled on this gateway")


def test_python_is_refused_and_the_start_log_warns_without_a_sandbox(unavailable: SandboxEnv) -> None:
    _assert_refused(unavailable, "the python tool is unavailable on this gateway: no OS sandbox works here")
    log = unavailable.gw.log()
    assert "WARNING" in log and "python tool enabled but unavailable" in log, log
