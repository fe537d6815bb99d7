"""The python sandbox's pure parts: the bwrap command line it builds, its settings, the result text, and the
refusals when the tool is off or no sandbox can run."""

from __future__ import annotations

import asyncio

import pytest

from omnirelay.compound.options import load_settings
from omnirelay.tools.python_sandbox import (
    PythonResult,
    SandboxUnavailable,
    python_refusal,
    run_python,
    sandbox_argv,
)
from omnirelay.tools.settings import PythonSettings


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_the_command_isolates_every_namespace_and_binds_only_the_runtime_read_only() -> None:
    argv = sandbox_argv(PythonSettings(tmp_mb=8), "/usr/bin/bwrap")
    head = argv[: argv.index("--")]
    for flag in (
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--proc",
    ):
        assert flag in head, flag  # fmt: skip
    assert head[head.index("--uid") + 1] == "65534" and head[head.index("--gid") + 1] == "65534"
    assert "--bind" not in head and "--dev-bind" not in head  # nothing of the host is writable
    assert [src for src, _ in _pairs(head, "--ro-bind")] == [d for d, _ in _pairs(head, "--ro-bind")]
    assert {src for src, _ in _pairs(head, "--ro-bind")} <= {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"}
    # The one writable place is a tmpfs with a size: --size applies to the --tmpfs right after it.
    size = head.index("--size")
    assert head[size + 1] == str(8 * 1024 * 1024) and head[size + 2 : size + 4] == ["--tmpfs", "/tmp"]
    assert head.count("--tmpfs") == 1
    assert head[head.index("--dev") + 2 : head.index("--dev") + 4] == ["--remount-ro", "/dev"]
    assert argv[argv.index("--") + 1 : argv.index("--") + 3] == ["/usr/bin/python3", "-I"]


def test_an_interpreter_outside_usr_brings_its_prefix_read_only() -> None:
    argv = sandbox_argv(PythonSettings(interpreter="/opt/python3.11/bin/python3"), "bwrap")
    assert ("/opt/python3.11", "/opt/python3.11") in _pairs(argv, "--ro-bind")


def test_the_limits_reach_the_prelude_as_numbers() -> None:
    argv = sandbox_argv(PythonSettings(cpu_seconds=3, memory_mb=128, tmp_mb=2, max_processes=5), "bwrap")
    assert argv[-4:] == ["3", str(128 * 1024 * 1024), str(2 * 1024 * 1024), "5"]


def test_the_tool_is_off_by_default_and_settings_are_range_checked() -> None:
    assert load_settings({}).python.enabled is False
    assert load_settings({"compound": {"python": {"enabled": True, "tmp_mb": 16}}}).python.tmp_mb == 16
    for bad in ({"tmp_mb": 0}, {"wall_seconds": -1}, {"max_processes": 0}, {"nope": 1}):
        with pytest.raises(ValueError, match=r"extra\.compound"):
            load_settings({"compound": {"python": bad}})


def test_refusals_say_why() -> None:
    assert "disabled on this gateway" in (python_refusal(PythonSettings()) or "")
    missing = PythonSettings(enabled=True, bwrap="/nonexistent/bwrap")
    assert "bubblewrap ('/nonexistent/bwrap') is not installed" in (python_refusal(missing) or "")
    no_python = PythonSettings(enabled=True, interpreter="/nonexistent/python3")
    assert "interpreter /nonexistent/python3 does not exist" in (python_refusal(no_python) or "")
    with pytest.raises(SandboxUnavailable, match="not installed"):
        asyncio.run(run_python("print(1)", missing))


def test_result_text_names_each_way_a_program_ends() -> None:
    assert PythonResult(stdout="42\n", stderr="", exit_code=0).as_text() == "42\n"
    assert PythonResult(stdout="", stderr="", exit_code=0).as_text() == "(no output)"
    assert "[exit code 3]" in PythonResult(stdout="", stderr="boom", exit_code=3).as_text()
    assert "[killed: wall-time limit]" in PythonResult(stdout="", stderr="", exit_code=None, timed_out=True).as_text()
    cut = PythonResult(stdout="xx", stderr="", exit_code=None, truncated=True).as_text()
    assert cut.startswith("xx\n[output truncated") and "[killed]" not in cut
    assert "CPU-time limit" in PythonResult(stdout="", stderr="", exit_code=None, signal=24).as_text()
