"""The settings of the server-side tools. They are read from ``extra.compound`` (``search_backends``, ``fetch``,
``python``), but belong to the tools: a tool takes its own settings type, never the compound package's."""

from __future__ import annotations

from typing import Annotated

import msgspec


class SearchBackendConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: str  # a name in omnirelay.tools.search.SEARCH_BACKENDS: local | searxng | tavily | brave
    url: str | None = None  # HTTP backends: base URL (default: the service's public endpoint)
    api_key: str | None = None
    api_key_env: str | None = None
    path: str | None = None  # local: the SQLite index file (default: <data_dir>/corpus.db)
    timeout: float = 15.0


class FetchSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    allow_private: bool = False  # loopback, private, link-local, reserved addresses
    allow_hosts: list[str] = []  # host names allowed even when they resolve to a private address
    max_bytes: int = 2_000_000
    timeout: float = 15.0
    max_chars: int = 20_000  # text kept per page


class PythonSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``python`` server tool (``extra.compound.python``): off unless ``enabled``, and then run only inside
    a bubblewrap sandbox (``omnirelay.tools.python_sandbox``); without one the tool is refused."""

    enabled: bool = False
    cpu_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 5  # per process
    memory_mb: Annotated[int, msgspec.Meta(ge=64, le=65536)] = 512  # address space per process
    wall_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0  # the whole sandbox, then it is killed
    max_output_chars: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 20_000  # stdout kept; past it: stopped
    tmp_mb: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 64  # the writable tmpfs: all files together
    max_processes: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16  # in the sandbox, its first process included
    # Sandboxes running at once in one worker; more wait their turn. With no cgroup limit, this times
    # max_processes * memory_mb bounds what the tool can take of the host's memory.
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4
    interpreter: str = "/usr/bin/python3"  # bound read-only into the sandbox (with its prefix if outside /usr)
    bwrap: str = "bwrap"  # the bubblewrap command (a name on PATH or a path)
    host_uid: int | None = 65534  # a gateway running as root starts the sandbox as this uid/gid; None: as root
