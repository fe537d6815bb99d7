"""Everything the benchmark needs beyond omnirelay's own venv, installed on demand so that ``make bench`` works on
a fresh machine: wrk and nginx from Debian's packages, LiteLLM's proxy and py-spy in separate venvs under
``bench/.work`` (never in the project's venv: LiteLLM's dependency pins must not leak into omnirelay's), and the
Node peers (Portkey's gateway, claude-code-router) with ``npm ci`` from the pinned package.json + package-lock.json
under ``bench/peers/<name>/`` into ``bench/.work/peers/<name>/`` (never at run time of a server).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

WORK = Path(__file__).resolve().parent / ".work"  # venvs, kept between runs
PEERS = Path(__file__).resolve().parent / "peers"  # the Node peers' pinned package.json + package-lock.json
# Configs, logs, databases and raw results of one run; BENCH_RUN_DIR moves them (the smoke test does, so it
# never touches a benchmark running at the same time).
RUN = Path(os.environ.get("BENCH_RUN_DIR") or WORK / "run")
# A pinned release. 1.82.7 and 1.82.8 were compromised on PyPI (credential stealer); 1.82.6 is the last
# release before them that projects widely pinned as safe.
LITELLM_SPEC = "litellm[proxy]==1.82.6"
PYSPY_SPEC = "py-spy==0.4.3"
APT_PACKAGES = {"wrk": "wrk", "nginx": "nginx"}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _run(argv: list[str], **kwargs: object) -> None:
    log("$ " + " ".join(argv))
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def ensure_apt(tools: list[str]) -> None:
    """Install the Debian packages providing ``tools`` if any is missing."""
    missing = [t for t in tools if (nginx_binary() if t == "nginx" else shutil.which(t)) is None]
    if not missing:
        return
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise RuntimeError(f"need {missing} (Debian packages); run as root or install them: apt-get install ...")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run([*prefix, "apt-get", "update", "-qq"], env=env)
    _run([*prefix, "apt-get", "install", "-y", "-qq", *(APT_PACKAGES[t] for t in missing)], env=env)


def _venv(name: str, spec: str) -> Path:
    """A venv under bench/.work with ``spec`` installed; reinstalled only when ``spec`` changes."""
    venv = WORK / name
    stamp = venv / ".bench-spec"
    if stamp.exists() and stamp.read_text() == spec:
        return venv
    if not (venv / "bin" / "python").exists():
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--upgrade", "pip"])
    _run([*pip, spec])
    stamp.write_text(spec)
    return venv


def ensure_litellm() -> Path:
    """The ``litellm`` executable of the pinned proxy."""
    return _venv("litellm-venv", LITELLM_SPEC) / "bin" / "litellm"


def ensure_pyspy() -> Path:
    return _venv("tools-venv", PYSPY_SPEC) / "bin" / "py-spy"


def litellm_version(litellm_bin: Path) -> str:
    out = subprocess.run(
        [str(litellm_bin.parent / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def _peer_dir(name: str) -> Path:
    return WORK / "peers" / name


def _lock_digest(name: str) -> str:
    src = PEERS / name
    return hashlib.sha256((src / "package.json").read_bytes() + (src / "package-lock.json").read_bytes()).hexdigest()


def peer_installed(name: str) -> Path | None:
    """The ``node_modules`` of Node peer ``name`` if it is installed from the current pinned lock, else None."""
    dest = _peer_dir(name)
    stamp = dest / ".bench-lock"
    if stamp.exists() and stamp.read_text() == _lock_digest(name) and (dest / "node_modules").is_dir():
        return dest / "node_modules"
    return None


def ensure_peer(name: str) -> Path:
    """``npm ci`` of ``bench/peers/<name>`` into ``bench/.work/peers/<name>`` (again only when the lock changed);
    returns its ``node_modules``. No install scripts run: the peers need none to serve."""
    found = peer_installed(name)
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"the {name} peer needs Node.js and npm (Debian: apt-get install nodejs npm)")
    dest = _peer_dir(name)
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copyfile(PEERS / name / f, dest / f)
    _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dest)
    (dest / ".bench-lock").write_text(_lock_digest(name))
    return dest / "node_modules"


def peer_version(name: str, package: str) -> str:
    """The installed version of ``package`` in Node peer ``name`` (``-`` when not installed)."""
    try:
        meta = json.loads((_peer_dir(name) / "node_modules" / package / "package.json").read_text())
        return str(meta.get("version", "-"))
    except (OSError, ValueError):
        return "-"


NODE_PEERS = ("portkey", "claude-code-router")  # the folders under bench/peers/


def main(argv: list[str]) -> int:
    """``python -m bench.install peers``: npm ci every Node peer whose lock changed (``make pytest`` runs it, so
    the bench smoke test finds them installed and needs no network itself)."""
    if argv != ["peers"]:
        print("usage: python -m bench.install peers", file=sys.stderr)
        return 2
    for name in NODE_PEERS:
        log(f"{name}: {ensure_peer(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
