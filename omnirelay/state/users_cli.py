"""``omnirelay users ...``: console accounts from the command line, on the database directly (as ``omnirelay
keys`` does). ``users add EMAIL --role admin`` asks for the password twice (or reads one line from stdin with
``--password-stdin``); ``users list``; ``users topup EMAIL USD``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from omnirelay.state.accounts import ROLES
from omnirelay.state.cli import ConfigOption, JsonOption, fail, with_store
from omnirelay.state.keys import to_units, to_usd
from omnirelay.state.passwords import hash_password, password_problem
from omnirelay.state.store import Store

users_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Console users (sign-in accounts).")


@users_app.command("add")
def add(
    email: str,
    role: Annotated[str, typer.Option("--role", help="admin or member")] = "member",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    config: ConfigOption = None,
) -> None:
    """Create a console user."""
    if role not in ROLES:
        raise fail("--role must be admin or member")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem is not None:
        raise fail(problem)
    password_hash = hash_password(password)

    async def work(store: Store) -> str:
        user = await store.accounts.create_user(email.strip().lower(), password_hash, role)
        return user.id

    user_id = with_store(config, work)
    typer.echo(f"created {role} {email.strip().lower()} ({user_id})")


@users_app.command("list")
def list_users(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List console users."""

    async def work(store: Store) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for u in await store.accounts.list_users():
            wallet = await store.accounts.wallet(u.wallet_id)
            rows.append(
                {
                    "id": u.id,
                    "email": u.email,
                    "role": u.role,
                    "team_id": u.team_id,
                    "disabled": u.disabled,
                    "balance": to_usd(wallet.balance_units),
                }
            )
        return rows

    rows = with_store(config, work)
    if as_json:
        import msgspec

        typer.echo(msgspec.json.encode(rows).decode())
        return
    for r in rows:
        typer.echo(
            f"{r['id']}  {r['email']}  {r['role']}  balance={r['balance']}{'  (disabled)' if r['disabled'] else ''}"
        )


@users_app.command("topup")
def topup(
    email: str,
    amount_usd: float,
    reason: Annotated[str, typer.Option("--reason")] = "top-up (cli)",
    config: ConfigOption = None,
) -> None:
    """Credit a user's wallet (their team's, for a team member); a negative amount is an adjustment."""
    if amount_usd == 0 or abs(amount_usd) > 1_000_000:
        raise fail("the amount must be non-zero and at most 1000000 USD")

    async def work(store: Store) -> int:
        found = await store.accounts.user_by_email(email.strip().lower())
        if found is None:
            raise ValueError(f"no user {email!r}")
        kind = "topup" if amount_usd > 0 else "adjust"
        return await store.accounts.add_entry(found[0].wallet_id, to_units(amount_usd), kind, reason, "cli")

    balance = with_store(config, work)
    typer.echo(f"balance: {to_usd(balance):.6f} USD")


__all__ = ["users_app"]
