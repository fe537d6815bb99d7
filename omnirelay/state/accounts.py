"""Console accounts: users, teams, price groups, wallets and their ledger, redemption codes, sessions and login
throttling, over either database (a store's ``Runner``, see accounts_sql.py).

Money: integer units of 1e-10 USD, as for keys. A wallet's balance is ``credited_units - spent_units``; every
change to either is written in the same transaction as the ledger entry explaining it, so the balance always
equals the sum of the wallet's ledger (usage entries are written with the usage batch itself, by the store's
``write_usage``). Secrets: a redemption code (``rc-<id>-<random>``) and a session id have 256 and 192 bits of
entropy, so SHA-256 is the right hash (as for API keys, see keys.py); codes are looked up by their public id and
compared with ``hmac.compare_digest``. Passwords use argon2id (passwords.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from typing import Any, Literal

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts_sql import LEDGER_COLUMNS, SPENDING_KINDS, WALLET_OF_USER, Row, Runner, Tx
from omnirelay.state.keys import ID_LENGTH, KeyRecord

Role = Literal["admin", "member"]
ROLES = ("admin", "member")
DEFAULT_GROUP = "default"
CODE_PREFIX = "rc-"
SESSION_TTL_S = 7 * 86400.0
LOGIN_WINDOW_S = 15 * 60.0
MAX_LOGIN_FAILURES = 5
_ALPHABET = string.ascii_lowercase + string.digits
USER_COLUMNS = "id, email, role, team_id, group_name, disabled, created_at"
UPDATABLE_USER_FIELDS = ("role", "team_id", "group_name", "disabled", "password_hash", "email")


def new_id(prefix: str = "") -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class User(msgspec.Struct, kw_only=True):
    id: str
    email: str
    role: str
    team_id: str | None
    group: str | None  # None: the team's group, else "default"
    disabled: bool
    created_at: float

    @property
    def wallet_id(self) -> str:
        return f"team:{self.team_id}" if self.team_id is not None else f"user:{self.id}"


class Team(msgspec.Struct, kw_only=True):
    id: str
    name: str
    group: str | None
    created_at: float


class Group(msgspec.Struct, kw_only=True):
    name: str
    multiplier: float


class LedgerEntry(msgspec.Struct, kw_only=True):
    id: int
    wallet_id: str
    created_at: float
    amount_units: int
    kind: str
    reason: str
    actor: str | None
    ref: str | None


class Code(msgspec.Struct, kw_only=True):
    id: str
    batch_id: str
    amount_units: int
    created_at: float
    created_by: str | None
    expires_at: float | None
    note: str | None
    redeemed_by: str | None
    redeemed_at: float | None


class Owner(msgspec.Struct, kw_only=True):
    """What the gate needs about the owner of a key: may they spend, from which wallet, at what multiplier."""

    user_id: str
    disabled: bool
    wallet_id: str
    multiplier: float


class Wallet(msgspec.Struct, kw_only=True):
    id: str
    credited_units: int = 0
    spent_units: int = 0

    @property
    def balance_units(self) -> int:
        return self.credited_units - self.spent_units


def _user(row: Row) -> User:
    return User(
        id=row[0],
        email=row[1],
        role=row[2],
        team_id=row[3],
        group=row[4],
        disabled=bool(row[5]),
        created_at=row[6],
    )


def _entry(row: Row) -> LedgerEntry:
    return LedgerEntry(
        id=int(row[0]),
        wallet_id=row[1],
        created_at=row[2],
        amount_units=int(row[3]),
        kind=row[4],
        reason=row[5],
        actor=row[6],
        ref=row[7],
    )


_CODE_COLUMNS = "id, batch_id, amount_units, created_at, created_by, expires_at, note, redeemed_by, redeemed_at"


def _code(row: Row) -> Code:
    return Code(
        id=row[0],
        batch_id=row[1],
        amount_units=int(row[2]),
        created_at=row[3],
        created_by=row[4],
        expires_at=row[5],
        note=row[6],
        redeemed_by=row[7],
        redeemed_at=row[8],
    )


def conflict(message: str, code: str) -> GatewayError:
    return GatewayError("invalid_request", message, status=409, code=code)


def code_id_of(code: str) -> str | None:
    if not code.startswith(CODE_PREFIX):
        return None
    code_id, sep, _rest = code[len(CODE_PREFIX) :].partition("-")
    return code_id if sep and len(code_id) == ID_LENGTH else None


def csrf_of(session_id: str) -> str:
    """The session's CSRF token: derived from its id (so it need not be stored in clear to be shown again)."""
    return hmac.new(session_id.encode(), b"omnirelay-console-csrf", hashlib.sha256).hexdigest()


class AccountStore:
    """The accounts in one store's database."""

    def __init__(self, db: Runner) -> None:
        self.db = db

    # -- users ---------------------------------------------------------------------------------------------

    async def count_users(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM users")
        return int(row[0]) if row else 0

    async def create_user(
        self, email: str, password_hash: str, role: str, team_id: str | None = None, group: str | None = None
    ) -> User:
        now = time.time()
        user = User(
            id=new_id("u"), email=email, role=role, team_id=team_id, group=group, disabled=False, created_at=now
        )
        try:
            await self._insert_user(user, password_hash)
        except Exception as exc:
            if self.db.is_unique_violation(exc):  # inserted by someone else since our check
                raise conflict(f"a user with email {email!r} exists", "user_exists") from None
            raise
        return user

    async def _insert_user(self, user: User, password_hash: str) -> None:
        email, role, team_id, group, now = user.email, user.role, user.team_id, user.group, user.created_at
        async with self.db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM users WHERE email = ?", email) is not None:
                raise conflict(f"a user with email {email!r} exists", "user_exists")
            await self._check_refs(tx, team_id, group)
            await tx.execute(
                "INSERT INTO users (id, email, password_hash, role, team_id, group_name, disabled, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                user.id,
                email,
                password_hash,
                role,
                team_id,
                group,
                False,
                now,
                now,
            )
            await tx.execute("INSERT INTO wallets (id) VALUES (?) ON CONFLICT (id) DO NOTHING", f"user:{user.id}")

    async def _check_refs(self, tx: Tx, team_id: str | None, group: str | None) -> None:
        if team_id is not None and await tx.fetchone("SELECT 1 FROM teams WHERE id = ?", team_id) is None:
            raise GatewayError("invalid_request", f"no team {team_id!r}", param="team_id")
        if group is not None and await tx.fetchone("SELECT 1 FROM user_groups WHERE name = ?", group) is None:
            raise GatewayError("invalid_request", f"no group {group!r}", param="group")

    async def get_user(self, user_id: str) -> User | None:
        row = await self.db.fetchone(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", user_id)
        return None if row is None else _user(row)

    async def user_by_email(self, email: str) -> tuple[User, str] | None:
        """The user and their password hash."""
        row = await self.db.fetchone(f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?", email)
        return None if row is None else (_user(row), row[7])

    async def list_users(self) -> list[User]:
        return [_user(r) for r in await self.db.fetch(f"SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id")]

    async def update_user(self, user_id: str, fields: dict[str, Any]) -> User | None:
        sets: list[str] = []
        args: list[Any] = []
        for name, value in fields.items():
            if name not in UPDATABLE_USER_FIELDS:
                raise ValueError(f"user field {name!r} cannot be updated")
            sets.append(f"{name} = ?")
            args.append(bool(value) if name == "disabled" else value)
        try:
            async with self.db.transaction() as tx:
                await self._check_refs(tx, fields.get("team_id"), fields.get("group_name"))
                changed = await tx.execute(
                    f"UPDATE users SET {', '.join([*sets, 'updated_at = ?'])} WHERE id = ?", *args, time.time(), user_id
                )
                if changed and (fields.get("disabled") or "password_hash" in fields):
                    await tx.execute("DELETE FROM console_sessions WHERE user_id = ?", user_id)
        except Exception as exc:
            if self.db.is_unique_violation(exc):
                raise conflict(f"a user with email {fields.get('email')!r} exists", "user_exists") from None
            raise
        return await self.get_user(user_id)

    async def delete_user(self, user_id: str) -> bool:
        """The user, their keys and sessions go; their wallet and its ledger stay (the history of money)."""
        async with self.db.transaction() as tx:
            gone = await tx.execute("DELETE FROM users WHERE id = ?", user_id)
            if gone:
                await tx.execute("DELETE FROM keys WHERE owner_user_id = ?", user_id)
                await tx.execute("DELETE FROM console_sessions WHERE user_id = ?", user_id)
        return gone > 0

    async def keys_of(self, user_id: str) -> list[KeyRecord]:
        from omnirelay.state.sql import KEY_COLUMNS, key_from_row

        rows = await self.db.fetch(
            f"SELECT {KEY_COLUMNS} FROM keys WHERE owner_user_id = ? ORDER BY created_at, id", user_id
        )
        return [key_from_row(r) for r in rows]

    # -- teams and groups ------------------------------------------------------------------------------------

    async def create_team(self, name: str, group: str | None = None) -> Team:
        team = Team(id=new_id("t"), name=name, group=group, created_at=time.time())
        async with self.db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM teams WHERE name = ?", name) is not None:
                raise conflict(f"a team named {name!r} exists", "team_exists")
            await self._check_refs(tx, None, group)
            await tx.execute(
                "INSERT INTO teams (id, name, group_name, created_at) VALUES (?, ?, ?, ?)",
                team.id,
                name,
                group,
                team.created_at,
            )
            await tx.execute("INSERT INTO wallets (id) VALUES (?) ON CONFLICT (id) DO NOTHING", f"team:{team.id}")
        return team

    async def get_team(self, team_id: str) -> Team | None:
        row = await self.db.fetchone("SELECT id, name, group_name, created_at FROM teams WHERE id = ?", team_id)
        return None if row is None else Team(id=row[0], name=row[1], group=row[2], created_at=row[3])

    async def list_teams(self) -> list[Team]:
        rows = await self.db.fetch("SELECT id, name, group_name, created_at FROM teams ORDER BY created_at, id")
        return [Team(id=r[0], name=r[1], group=r[2], created_at=r[3]) for r in rows]

    async def update_team(self, team_id: str, name: str | None, group: str | None, set_group: bool) -> Team | None:
        async with self.db.transaction() as tx:
            if name is not None:
                other = await tx.fetchone("SELECT id FROM teams WHERE name = ?", name)
                if other is not None and other[0] != team_id:
                    raise conflict(f"a team named {name!r} exists", "team_exists")
                await tx.execute("UPDATE teams SET name = ? WHERE id = ?", name, team_id)
            if set_group:
                await self._check_refs(tx, None, group)
                await tx.execute("UPDATE teams SET group_name = ? WHERE id = ?", group, team_id)
        return await self.get_team(team_id)

    async def delete_team(self, team_id: str) -> bool:
        """Members go back to their own wallets; the team's wallet and ledger stay."""
        async with self.db.transaction() as tx:
            gone = await tx.execute("DELETE FROM teams WHERE id = ?", team_id)
            if gone:
                await tx.execute("UPDATE users SET team_id = NULL WHERE team_id = ?", team_id)
        return gone > 0

    async def list_groups(self) -> list[Group]:
        rows = await self.db.fetch("SELECT name, multiplier FROM user_groups ORDER BY name")
        return [Group(name=r[0], multiplier=float(r[1])) for r in rows]

    async def get_group(self, name: str) -> Group | None:
        row = await self.db.fetchone("SELECT name, multiplier FROM user_groups WHERE name = ?", name)
        return None if row is None else Group(name=row[0], multiplier=float(row[1]))

    async def create_group(self, name: str, multiplier: float) -> Group:
        async with self.db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM user_groups WHERE name = ?", name) is not None:
                raise conflict(f"a group named {name!r} exists", "group_exists")
            await tx.execute(
                "INSERT INTO user_groups (name, multiplier, created_at) VALUES (?, ?, ?)", name, multiplier, time.time()
            )
        return Group(name=name, multiplier=multiplier)

    async def update_group(self, name: str, multiplier: float) -> Group | None:
        async with self.db.transaction() as tx:
            changed = await tx.execute("UPDATE user_groups SET multiplier = ? WHERE name = ?", multiplier, name)
        return Group(name=name, multiplier=multiplier) if changed else None

    async def group_of(self, user: User) -> Group:
        """The group whose multiplier applies to the user: their own, else their team's, else ``default``."""
        name = user.group
        if name is None and user.team_id is not None:
            team = await self.get_team(user.team_id)
            name = team.group if team is not None else None
        return await self.get_group(name or DEFAULT_GROUP) or Group(name=name or DEFAULT_GROUP, multiplier=1.0)

    # -- what the gate caches ----------------------------------------------------------------------------------

    async def load_owners(self) -> list[Owner]:
        rows = await self.db.fetch(
            f"SELECT us.id, us.disabled, {WALLET_OF_USER}, COALESCE(g.multiplier, 1.0) FROM users AS us"
            " LEFT JOIN teams AS t ON t.id = us.team_id"
            f" LEFT JOIN user_groups AS g ON g.name = COALESCE(us.group_name, t.group_name, '{DEFAULT_GROUP}')"
        )
        return [Owner(user_id=r[0], disabled=bool(r[1]), wallet_id=r[2], multiplier=float(r[3])) for r in rows]

    async def load_wallets(self) -> list[Wallet]:
        rows = await self.db.fetch("SELECT id, credited_units, spent_units FROM wallets")
        return [Wallet(id=r[0], credited_units=int(r[1]), spent_units=int(r[2])) for r in rows]

    # -- wallets and the ledger ------------------------------------------------------------------------------

    async def wallet(self, wallet_id: str) -> Wallet:
        row = await self.db.fetchone("SELECT id, credited_units, spent_units FROM wallets WHERE id = ?", wallet_id)
        return (
            Wallet(id=wallet_id)
            if row is None
            else Wallet(id=row[0], credited_units=int(row[1]), spent_units=int(row[2]))
        )

    async def add_entry(
        self, wallet_id: str, amount_units: int, kind: str, reason: str, actor: str | None, ref: str | None = None
    ) -> int:
        """Write one ledger entry and move the wallet's balance by it, together. Returns the new balance."""
        async with self.db.transaction() as tx:
            return await _entry_in(tx, wallet_id, amount_units, kind, reason, actor, ref)

    async def ledger(self, wallet_id: str, limit: int, before_id: int | None = None) -> list[LedgerEntry]:
        """Newest first; ``before_id`` pages on."""
        if before_id is None:
            rows = await self.db.fetch(
                f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE wallet_id = ? ORDER BY id DESC LIMIT {int(limit)}",
                wallet_id,
            )
        else:
            rows = await self.db.fetch(
                f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE wallet_id = ? AND id < ? ORDER BY id DESC"
                f" LIMIT {int(limit)}",
                wallet_id,
                before_id,
            )
        return [_entry(r) for r in rows]

    async def ledger_sum(self, wallet_id: str) -> int:
        row = await self.db.fetchone("SELECT COALESCE(SUM(amount_units), 0) FROM ledger WHERE wallet_id = ?", wallet_id)
        return int(row[0]) if row else 0

    # -- redemption codes ------------------------------------------------------------------------------------

    async def create_codes(
        self, count: int, amount_units: int, expires_at: float | None, note: str | None, actor: str | None
    ) -> tuple[str, list[tuple[str, str]]]:
        """A batch of one-time codes: its id and each code's (id, code), the only time the codes exist in clear."""
        batch_id = new_id("b")
        now = time.time()
        made: list[tuple[str, str]] = []
        async with self.db.transaction() as tx:
            for _ in range(count):
                code_id = new_id()
                code = f"{CODE_PREFIX}{code_id}-{secrets.token_urlsafe(24)}"
                await tx.execute(
                    f"INSERT INTO redemption_codes ({_CODE_COLUMNS}, code_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    code_id,
                    batch_id,
                    amount_units,
                    now,
                    actor,
                    expires_at,
                    note,
                    None,
                    None,
                    sha256(code),
                )
                made.append((code_id, code))
        return batch_id, made

    async def list_codes(self, batch_id: str | None = None) -> list[Code]:
        if batch_id is None:
            rows = await self.db.fetch(f"SELECT {_CODE_COLUMNS} FROM redemption_codes ORDER BY created_at, id")
        else:
            rows = await self.db.fetch(
                f"SELECT {_CODE_COLUMNS} FROM redemption_codes WHERE batch_id = ? ORDER BY created_at, id", batch_id
            )
        return [_code(r) for r in rows]

    async def redeem(self, code: str, user: User) -> tuple[int, int]:
        """Redeem a code into the user's wallet, at most once whoever else tries at the same moment: the code is
        marked only if nobody marked it first (a conditional update, which PostgreSQL serialises on the row and
        SQLite under its write lock), and the credit is written in the same transaction. (amount, new balance);
        404 for an unknown code, 409 for a redeemed one, 410 for an expired one."""
        code_id = code_id_of(code)
        now = time.time()
        async with self.db.transaction() as tx:
            row = None
            if code_id is not None:
                row = await tx.fetchone(
                    "SELECT code_hash, amount_units, expires_at, redeemed_at FROM redemption_codes WHERE id = ?",
                    code_id,
                )
            stored_hash = row[0] if row is not None else sha256("")
            if not hmac.compare_digest(sha256(code).encode(), str(stored_hash).encode()) or row is None:
                raise GatewayError("not_found", "no such redemption code", code="code_not_found", param="code")
            if row[3] is not None:
                raise conflict("this code has been redeemed already", "code_redeemed")
            if row[2] is not None and row[2] <= now:
                raise GatewayError("invalid_request", "this code has expired", status=410, code="code_expired")
            marked = await tx.execute(
                "UPDATE redemption_codes SET redeemed_by = ?, redeemed_at = ? WHERE id = ? AND redeemed_at IS NULL",
                user.id,
                now,
                code_id,
            )
            if not marked:
                raise conflict("this code has been redeemed already", "code_redeemed")
            amount = int(row[1])
            balance = await _entry_in(tx, user.wallet_id, amount, "redeem", f"code {code_id}", user.id, code_id)
        return amount, balance

    # -- sessions and login throttling ---------------------------------------------------------------------------

    async def create_session(self, user_id: str, ttl_s: float = SESSION_TTL_S) -> str:
        """A new session id (returned once, stored hashed, as is its CSRF token)."""
        session_id = secrets.token_urlsafe(24)
        now = time.time()
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM console_sessions WHERE expires_at <= ?", now)
            await tx.execute(
                "INSERT INTO console_sessions (id_hash, user_id, csrf_hash, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                sha256(session_id),
                user_id,
                sha256(csrf_of(session_id)),
                now,
                now + ttl_s,
            )
        return session_id

    async def session_user(self, session_id: str) -> User | None:
        """The signed-in, enabled user of a live session."""
        cols = ", ".join(f"us.{c.strip()}" for c in USER_COLUMNS.split(","))
        row = await self.db.fetchone(
            f"SELECT {cols} FROM console_sessions AS s JOIN users AS us ON us.id = s.user_id"
            " WHERE s.id_hash = ? AND s.expires_at > ?",
            sha256(session_id),
            time.time(),
        )
        user = None if row is None else _user(row)
        return None if user is None or user.disabled else user

    async def delete_session(self, session_id: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM console_sessions WHERE id_hash = ?", sha256(session_id))

    async def login_failures(self, scopes: list[str], window_s: float = LOGIN_WINDOW_S) -> int:
        """The most failed logins of any of ``scopes`` (``email:..``, ``ip:..``) within the window."""
        marks = ", ".join("?" * len(scopes))
        rows = await self.db.fetch(
            f"SELECT scope, COUNT(*) FROM login_failures WHERE scope IN ({marks}) AND at >= ? GROUP BY scope",
            *scopes,
            time.time() - window_s,
        )
        return max((int(r[1]) for r in rows), default=0)

    async def record_login_failure(self, scopes: list[str], window_s: float = LOGIN_WINDOW_S) -> None:
        now = time.time()
        async with self.db.transaction() as tx:
            # Everything older than the window goes (the table holds one window's failures at most).
            await tx.execute("DELETE FROM login_failures WHERE at < ?", now - window_s)
            for scope in scopes:
                await tx.execute("INSERT INTO login_failures (scope, at) VALUES (?, ?)", scope, now)

    async def clear_login_failures(self, scope: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM login_failures WHERE scope = ?", scope)


async def _entry_in(
    tx: Tx, wallet_id: str, amount_units: int, kind: str, reason: str, actor: str | None, ref: str | None
) -> int:
    await tx.execute("INSERT INTO wallets (id) VALUES (?) ON CONFLICT (id) DO NOTHING", wallet_id)
    await tx.execute(
        "INSERT INTO ledger (wallet_id, created_at, amount_units, kind, reason, actor, ref)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        wallet_id,
        time.time(),
        amount_units,
        kind,
        reason,
        actor,
        ref,
    )
    if kind in SPENDING_KINDS:
        await tx.execute("UPDATE wallets SET spent_units = spent_units - ? WHERE id = ?", amount_units, wallet_id)
    else:
        await tx.execute("UPDATE wallets SET credited_units = credited_units + ? WHERE id = ?", amount_units, wallet_id)
    row = await tx.fetchone("SELECT credited_units - spent_units FROM wallets WHERE id = ?", wallet_id)
    assert row is not None
    return int(row[0])
