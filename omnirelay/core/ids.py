"""Response identifiers in each family's style."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def now() -> int:
    return int(time.time())
