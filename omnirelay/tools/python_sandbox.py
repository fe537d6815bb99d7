"""``python``: run model-written code in an OS-level sandbox (bubblewrap), never in the gateway's own context.

What the program gets (``sandbox_argv``):

* Its own user, PID, mount, network, IPC, UTS and cgroup namespaces (``bwrap --unshare-all --unshare-user``),
  no capabilities, ``--disable-userns`` (no nested user namespace, so no way to mount a filesystem of its own),
  and uid/gid 65534 inside. When the gateway runs as root, bwrap itself is started as uid/gid 65534 on the host
  (``PythonSettings.host_uid``, through util-linux's ``setpriv``, no groups, no capabilities), so even an
  escape from the namespaces lands as ``nobody``. A gateway that is not root runs bwrap as its own uid (the
  namespaces still hide its files, processes and network; the host must allow unprivileged user namespaces).
* A root filesystem of its own: the host's ``/usr`` (and the ``/bin``, ``/lib*`` links into it) read-only, a
  fresh ``/proc`` that shows only the sandbox's processes, a minimal read-only ``/dev``, and one writable
  size-capped tmpfs at ``/tmp`` (its working directory and ``HOME``): ``tmp_mb`` is the total of everything
  the program can write. No ``/etc``, no gateway file (config, database, venv), no host ``/proc``.
* No network: only a loopback interface of its own (abstract Unix sockets are per network namespace too).
* An empty environment (bwrap's own too: its init is the sandbox's pid 1, and its environment is readable).
* rlimits set by a prelude before the code runs (hard limits, so the code cannot raise them): CPU seconds,
  address space, file size, processes (counted in the sandbox's user namespace), core dumps.

The parent reads stdout while the program runs and keeps at most ``max_output_chars`` of it: past that the
sandbox is killed and the output is marked truncated; stderr keeps a bounded tail. At the wall-time limit (or
at the output cap) bwrap is killed: ``--die-with-parent`` then kills the sandbox's pid 1, and with it the
kernel kills every process of the PID namespace, double-forked ``setsid`` daemons included. A program that
exits leaves nothing behind for the same reason.

Without a working bubblewrap (missing, or user namespaces refused by the host) the tool is unavailable:
``sandbox_problem`` says why, and the tool loop refuses requests naming ``python``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import weakref
from functools import cache
from typing import Any

import msgspec

from omnirelay.tools.settings import PythonSettings

SANDBOX_UID = 65534  # uid and gid inside the sandbox (nobody)
WORKDIR = "/tmp"
_PROBE_TIMEOUT = 15.0
_READ_CHUNK = 65536
# Runs inside the sandbox before the program (read from stdin): limits first, then the program. The limits are
# passed as argv (numbers only) so that the prelude is a constant.
_PRELUDE = r"""
import resource, sys
cpu, mem, fsize, nproc = (int(a) for a in sys.argv[1:5])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the soft limit, SIGKILL a second later
for which, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_NPROC, nproc),
                     (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(which, (value, value))
del which, value, cpu, mem, fsize, nproc, resource
sys.argv = ["<python>"]
_code = sys.stdin.read()
sys.stdin.close()
exec(compile(_code, "<python>", "exec"), {"__name__": "__main__"})
"""
_BWRAP_ENV = {"PATH": "/usr/bin:/bin"}  # bwrap's own environment: visible inside as /proc/1/environ
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": WORKDIR,
    "LANG": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}


class SandboxUnavailable(Exception):
    """No OS sandbox can run here; the message says why."""


class PythonResult(msgspec.Struct, kw_only=True):
    stdout: str
    stderr: str
    exit_code: int | None  # None: killed
    timed_out: bool = False
    truncated: bool = False  # stdout passed the output cap: the program was stopped there
    signal: int | None = None  # the signal the program died of, when known (SIGXCPU: the CPU-time limit)

    def as_text(self) -> str:
        parts = []
        if self.stdout:
            parts.append(self.stdout)
        if self.truncated:
            parts.append("[output truncated: the program was stopped at the output limit]")
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr)
        if self.timed_out:
            parts.append("[killed: wall-time limit]")
        elif self.signal == signal.SIGXCPU:
            parts.append("[killed: CPU-time limit]")
        elif self.exit_code is None and not self.truncated:
            parts.append("[killed]")
        elif self.exit_code not in (0, None):
            parts.append(f"[exit code {self.exit_code}]")
        return "\n".join(parts) or "(no output)"


def _root_links() -> list[str]:
    """The top-level directories a merged-/usr system links into /usr (``/bin -> usr/bin``...): the same links
    in the sandbox, or read-only binds where the host has real directories."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _interpreter_mounts(interpreter: str) -> list[str]:
    """Read-only binds for an interpreter outside /usr: its installation prefix (``<prefix>/bin/python3``)."""
    real = os.path.realpath(interpreter)
    if real.startswith("/usr/"):
        return []
    prefix = os.path.dirname(os.path.dirname(real))
    return ["--ro-bind", prefix, prefix]


def sandbox_argv(settings: PythonSettings, bwrap: str) -> list[str]:
    """The bwrap command line running the prelude under ``settings`` (the program comes on stdin)."""
    tmp_bytes = settings.tmp_mb * 1024 * 1024
    limits = [
        str(settings.cpu_seconds),
        str(settings.memory_mb * 1024 * 1024),
        str(tmp_bytes),
        str(settings.max_processes),
    ]
    env: list[str] = ["--clearenv"]
    for name, value in _ENV.items():
        env += ["--setenv", name, value]
    return [
        bwrap,
        "--unshare-all",
        "--unshare-user",  # --unshare-all only tries; a sandbox without its own user namespace is refused
        "--disable-userns",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        *_root_links(),
        *_interpreter_mounts(settings.interpreter),
        "--proc", "/proc",
        "--dev", "/dev",
        "--remount-ro", "/dev",  # /dev is a tmpfs without a size: nothing may be written there
        "--size", str(tmp_bytes),
        "--tmpfs", WORKDIR,
        "--remount-ro", "/",
        "--chdir", WORKDIR,
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        *env,
        "--",
        settings.interpreter, "-I", "-c", _PRELUDE, *limits,
    ]  # fmt: skip


def _launcher(host_uid: int | None) -> list[str] | None:
    """The command that starts bwrap as an unprivileged host uid when the gateway is root (setpriv, from
    util-linux: the event loop's subprocess support cannot change the uid itself); None when it is needed
    but missing."""
    if os.geteuid() != 0 or host_uid is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    ids = [f"--reuid={host_uid}", f"--regid={host_uid}", "--clear-groups"]
    return [setpriv, *ids, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


@cache
def _probe(argv: tuple[str, ...]) -> str | None:
    try:
        done = subprocess.run(
            argv,
            input=b"print(6 * 7)\n",
            capture_output=True,
            env=_BWRAP_ENV,
            timeout=_PROBE_TIMEOUT,
            start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not run: {exc}"
    if done.returncode != 0 or done.stdout.strip() != b"42":
        err = done.stderr.decode(errors="replace").strip().splitlines()
        return f"bubblewrap failed (exit {done.returncode}): {err[-1] if err else 'no output'}"
    return None


def _command(settings: PythonSettings) -> list[str] | str:
    """The full command line for ``settings``, or why there is none."""
    bwrap = shutil.which(settings.bwrap)
    if bwrap is None:
        return f"bubblewrap ({settings.bwrap!r}) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if not os.path.isfile(settings.interpreter):
        return f"the sandbox interpreter {settings.interpreter} does not exist"
    launcher = _launcher(settings.host_uid)
    if launcher is None:
        return "setpriv (util-linux) is needed to start the sandbox as an unprivileged user"
    return [*launcher, *sandbox_argv(settings, bwrap)]


def sandbox_problem(settings: PythonSettings) -> str | None:
    """Why no sandbox can run with ``settings`` on this host, or None when one does (checked once by running a
    trivial program in it; the answer is cached)."""
    command = _command(msgspec.structs.replace(settings, cpu_seconds=5, wall_seconds=_PROBE_TIMEOUT))
    if isinstance(command, str):
        return command
    return _probe(tuple(command))


def python_refusal(settings: PythonSettings) -> str | None:
    """Why a request naming the ``python`` tool is refused here, or None when the tool may run."""
    if not settings.enabled:
        return "the python tool is disabled on this gateway (config: extra.compound.python.enabled)"
    problem = sandbox_problem(settings)
    if problem is not None:
        return f"the python tool is unavailable on this gateway: no OS sandbox works here ({problem})"
    return None


class _Output:
    """stdout kept up to a byte cap (then the sandbox is stopped), stderr as a bounded tail."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.truncated = False

    async def read_stdout(self, stream: asyncio.StreamReader, stop: asyncio.Event) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            room = self.cap - len(self.stdout)
            if len(chunk) > room:
                self.stdout += chunk[:room]
                self.truncated = True
                stop.set()
                return
            self.stdout += chunk

    async def read_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            self.stderr += chunk
            if len(self.stderr) > 2 * self.cap:
                del self.stderr[: len(self.stderr) - self.cap]


async def _feed(proc: asyncio.subprocess.Process, code: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(code)
        await proc.stdin.drain()
        proc.stdin.close()


def _kill(proc: asyncio.subprocess.Process) -> None:
    # bwrap leads its own process group; its death takes the sandbox's pid 1 and so the whole PID namespace.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


async def _supervise(proc: asyncio.subprocess.Process, code: bytes, out: _Output, wall: float) -> bool:
    """Feed the program, read its output, and kill the sandbox at the wall-time limit or the output cap; True
    when the wall-time limit stopped it."""
    assert proc.stdout is not None and proc.stderr is not None
    stop = asyncio.Event()
    work: asyncio.Future[Any] = asyncio.gather(
        _feed(proc, code), out.read_stdout(proc.stdout, stop), out.read_stderr(proc.stderr), proc.wait()
    )
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait((work, stopper), timeout=wall, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            work.result()
            return False
        _kill(proc)
        with contextlib.suppress(TimeoutError):  # everything in the sandbox is dead: the pipes close at once
            await asyncio.wait_for(asyncio.shield(work), timeout=10.0)
        return not out.truncated
    finally:
        stopper.cancel()
        work.cancel()


# Per event loop (a semaphore belongs to one loop) and per max_concurrent (one worker has one settings object).
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = weakref.WeakKeyDictionary()


def _slot(settings: PythonSettings) -> asyncio.Semaphore:
    by_limit = _slots.setdefault(asyncio.get_running_loop(), {})
    slot = by_limit.get(settings.max_concurrent)
    if slot is None:
        slot = by_limit[settings.max_concurrent] = asyncio.Semaphore(settings.max_concurrent)
    return slot


async def run_python(code: str, settings: PythonSettings) -> PythonResult:
    """Run ``code`` in the sandbox, at most ``max_concurrent`` at once; raises ``SandboxUnavailable`` when no
    sandbox works on this host."""
    problem = sandbox_problem(settings)
    command = _command(settings)
    if problem is not None or isinstance(command, str):
        raise SandboxUnavailable(problem or str(command))
    async with _slot(settings):
        return await _run(command, code, settings)


async def _run(command: list[str], code: str, settings: PythonSettings) -> PythonResult:
    out = _Output(settings.max_output_chars * 4)  # UTF-8: at most 4 bytes a character
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_BWRAP_ENV,
        cwd="/",
        start_new_session=True,
    )
    try:
        timed_out = await _supervise(proc, code.encode(), out, settings.wall_seconds)
    finally:
        if proc.returncode is None:  # cancelled (the client left): the sandbox goes too
            _kill(proc)
            await proc.wait()
    status = proc.returncode
    # bwrap exits 128 + N when the program died of signal N (SIGXCPU at the CPU limit, SIGKILL...).
    died_of = status - 128 if status is not None and 128 < status <= 128 + 64 else None
    killed = timed_out or out.truncated or status is None or status < 0 or died_of is not None
    return PythonResult(
        stdout=out.stdout.decode(errors="replace")[: settings.max_output_chars],
        stderr=out.stderr.decode(errors="replace")[-settings.max_output_chars :],
        exit_code=None if killed else status,
        timed_out=timed_out,
        truncated=out.truncated,
        signal=died_of if not (timed_out or out.truncated) else None,
    )
