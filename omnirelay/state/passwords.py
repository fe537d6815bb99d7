"""Password hashing for console users: argon2id (argon2-cffi's defaults: 64 MiB, 3 passes), run in a thread so a
login never stalls the event loop. An unknown email is checked against a dummy hash, so the time a login takes
does not tell which emails exist."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()
# What an unknown email is checked against: a hash with the hasher's parameters, written out rather than computed
# at import (computing it would make every gateway's memory peak at start 64 MiB higher).
DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$VOREqWRPOVNrR4+TGwIrKQ$AaMjb1gPQn2B54rE35+886sUfNKfAX2DacvwuiGTud4"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password: str, password_hash: str | None) -> bool:
    return await asyncio.to_thread(verify_password, password, password_hash)


def password_problem(password: object) -> str | None:
    """Why a new password is refused, or None."""
    if not isinstance(password, str):
        return "password must be a string"
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
    if "\x00" in password:
        return "password must not contain NUL"
    return None
