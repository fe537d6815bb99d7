"""``python``: run model-written code in a subprocess with limits.

* CPU time, address space and file size by ``resource.setrlimit`` in the child; wall time by the parent,
  which kills the child's whole process group.
* An empty temporary directory as the working directory (removed afterwards) and a clean environment: no
  variable of the gateway's (API keys live there) is inherited.
* No network: as root with ``unshare`` available, the child runs in a new network namespace (no interfaces
  up). In every case an audit hook installed before the code runs refuses socket creation, process spawning,
  and opening files for writing outside the temporary directory. The hook is a guard against accidents and
  casual misuse by a model, not a security boundary against hostile native code (``ctypes`` is refused too,
  but run the gateway in a container if callers are untrusted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile

import msgspec

from omnirelay.compound.options import PythonSettings

# Runs in the child before the user's code (read from stdin): installs the audit hook, then executes.
_PRELUDE = r"""
import os, sys
_root = os.path.realpath(os.getcwd())
def _guard(event, args):
    if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo"):
        raise PermissionError("network access is disabled in this sandbox")
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn", "ctypes.dlopen", "ctypes.cdata"):
        raise PermissionError(f"{event} is disabled in this sandbox")
    if event == "open" and len(args) >= 2:
        path, mode = args[0], args[1]
        writing = isinstance(mode, str) and any(c in mode for c in "wax+")
        if isinstance(mode, int):
            writing = bool(mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
        if writing and isinstance(path, (str, bytes)):
            real = os.path.realpath(os.fsdecode(path))
            if real != _root and not real.startswith(_root + os.sep):
                raise PermissionError(f"writing outside the sandbox directory is not allowed: {real}")
    if event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "shutil.rmtree",
                 "os.symlink", "os.link", "os.truncate"):
        for p in args[:2]:
            if isinstance(p, (str, bytes)):
                real = os.path.realpath(os.fsdecode(p))
                if real != _root and not real.startswith(_root + os.sep):
                    raise PermissionError(f"{event} outside the sandbox directory is not allowed")
_code = sys.stdin.read()
sys.addaudithook(_guard)
del _guard
exec(compile(_code, "<python>", "exec"), {"__name__": "__main__"})
"""


class PythonResult(msgspec.Struct, kw_only=True):
    stdout: str
    stderr: str
    exit_code: int | None  # None: killed
    timed_out: bool = False
    isolated_network: bool = False  # a network namespace was used (besides the audit hook)

    def as_text(self) -> str:
        parts = []
        if self.stdout:
            parts.append(self.stdout)
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr)
        if self.timed_out:
            parts.append("[killed: wall-time limit]")
        elif self.exit_code not in (0, None):
            parts.append(f"[exit code {self.exit_code}]")
        elif self.exit_code is None:
            parts.append("[killed]")
        return "\n".join(parts) or "(no output)"


def _can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and sys.platform.startswith("linux")


_UNSHARE = _can_unshare()


def _limits(settings: PythonSettings) -> None:
    import resource

    cpu = settings.cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = settings.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (50 * 1024 * 1024, 50 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def run_python(code: str, settings: PythonSettings) -> PythonResult:
    workdir = tempfile.mkdtemp(prefix="omnirelay-py-")
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    argv = [sys.executable, "-I", "-c", _PRELUDE]
    if _UNSHARE:
        argv = ["unshare", "--net", "--", *argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: _limits(settings),
        )
        timed_out = False
        try:
            out, err = await asyncio.wait_for(proc.communicate(code.encode()), timeout=settings.wall_seconds)
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = await proc.communicate()
        code_ = proc.returncode
        limit = settings.max_output_chars
        return PythonResult(
            stdout=out.decode(errors="replace")[:limit],
            stderr=err.decode(errors="replace")[-limit:],
            exit_code=None if timed_out or (code_ is not None and code_ < 0) else code_,
            timed_out=timed_out,
            isolated_network=_UNSHARE,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
