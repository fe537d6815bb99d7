"""Response identifiers in each family's style.

An id is a per-process random part plus a counter: unique across processes and restarts (the random part is
drawn again in a forked child) without a ``getrandom`` system call per id, which showed in profiles. Ids are
identifiers, not secrets; anything that must be unguessable uses ``secrets`` directly.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time

_process = ""
_counter = itertools.count()


def _reseed() -> None:
    global _process, _counter
    _process = secrets.token_hex(7)  # 56 random bits per process
    _counter = itertools.count(secrets.randbelow(1 << 32))  # a random start: ids do not count requests from 0


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_id(prefix: str) -> str:
    return f"{prefix}{_process}{next(_counter):010x}"


def now() -> int:
    return int(time.time())
