"""Helpers for the routing tests: gateway configs over the fault server, socket and task counting."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.gateway import Gateway, free_port
from tests.mocks.faults import FaultServer
from tests.polling import wait_until

ADMIN_KEY = "sk-routing-admin"
TIMEOUTS = {"connect": 1.0, "first_byte": 1.0, "total": 6.0}


def fault_upstream(faults: FaultServer, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "preset": "openai",
        "base_url": faults.base_url(name),
        "api_key": f"sk-{name}-secret",
        "timeouts": dict(TIMEOUTS),
        **extra,
    }


def channel(upstream: str, model: str = "gpt-4.1-mini", **extra: Any) -> dict[str, Any]:
    return {"upstream": upstream, "model": model, **extra}


def base_config(faults: FaultServer, upstreams: list[str], models: dict[str, Any], **routing: Any) -> dict[str, Any]:
    return {
        "server": {"master_key": ADMIN_KEY},
        "upstreams": [fault_upstream(faults, n) for n in upstreams],
        "models": models,
        "routing": {
            "retry": {"max_attempts": 2, "backoff_base": 0.05, "backoff_cap": 0.2, "retry_after_cap": 3.0},
            **routing,
        },
    }


def admin_get(gw: Gateway, path: str) -> httpx.Response:
    return httpx.get(gw.url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)


def channel_states(gw: Gateway) -> dict[str, dict[str, Any]]:
    """The gateway's /admin/channels view by channel name."""
    resp = admin_get(gw, "/admin/channels")
    assert resp.status_code == 200, resp.text
    return {c["channel"]: c for c in resp.json()["data"]}


def channel_state(gw: Gateway, name: str) -> str:
    """One channel's breaker state as the admin view reports it: closed, open or half_open."""
    return str(channel_states(gw)[name]["state"])


def task_count(gw: Gateway) -> int:
    """The worker's asyncio task count (/admin/debug/tasks)."""
    resp = admin_get(gw, "/admin/debug/tasks")
    assert resp.status_code == 200, resp.text
    count: int = resp.json()["tasks"]
    return count


def usage_rows(gw: Gateway, request_id: str, settle_s: float = 3.0) -> list[dict[str, Any]]:
    """The usage records with this request id, once there is one. The record is settled just after the
    response went out, so the client can be a moment ahead of it; none within ``settle_s`` fails the test."""

    def rows() -> list[dict[str, Any]]:
        resp = admin_get(gw, "/admin/usage")
        assert resp.status_code == 200, resp.text
        return [r for r in resp.json()["data"] if r.get("request_id") == request_id]

    return wait_until(rows, settle_s, f"a usage record for {request_id}")


# -- a private Redis ------------------------------------------------------------------------------------


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of the test's own (it may stop or kill it) and its URL. Debian's redis-server is part of
    the test machine (scripts/services.sh starts the shared one): its absence is a failure, not a skip."""
    exe = shutil.which("redis-server")
    assert exe is not None, "redis-server is not installed"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis_answers(url), 10, f"redis-server on port {port}")
        yield proc, url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a test may have left it stopped
        proc.terminate()
        proc.wait(10)


# -- sockets --------------------------------------------------------------------------------------------

_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def _descendants(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out.extend(_descendants(int(child)))
    return out


def tcp_sockets(pid: int, local_port: int | None = None) -> Counter[str]:
    """TCP sockets held by ``pid`` and its child processes (granian's workers), counted by state; with
    ``local_port``, only those on that local port (the server's side of its clients' connections)."""
    inodes: set[str] = set()
    for p in _descendants(pid):
        fd_dir = f"/proc/{p}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    states: Counter[str] = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                if local_port is not None and int(fields[1].rsplit(":", 1)[1], 16) != local_port:
                    continue
                states[_TCP_STATES.get(fields[3], fields[3])] += 1
    return states
