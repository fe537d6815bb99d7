"""Pure parts of the accounts: placeholders, code ids, and the gate's wallet view."""

from __future__ import annotations

from omnirelay.state.accounts import Owner, Wallet, code_id_of
from omnirelay.state.accounts_sql import dollarize
from omnirelay.state.keys import new_key
from omnirelay.state.wallet_cache import ownerships


def test_dollarize() -> None:
    assert dollarize("SELECT 1 FROM t WHERE a = ? AND b IN (?, ?)") == "SELECT 1 FROM t WHERE a = $1 AND b IN ($2, $3)"
    assert dollarize("SELECT 1") == "SELECT 1"


def test_code_ids() -> None:
    assert code_id_of("rc-abcdefghijkl-secret") == "abcdefghijkl"
    for bad in ("rc-short-secret", "abcdefghijkl-secret", "rc-abcdefghijkl", ""):
        assert code_id_of(bad) is None


def test_ownerships_map_keys_to_wallets_and_pending() -> None:
    solo, _ = new_key("solo", owner_user_id="u1")
    team1, _ = new_key("t1", owner_user_id="u2")
    team2, _ = new_key("t2", owner_user_id="u3")
    gone, _ = new_key("gone", owner_user_id="u4")
    disabled, _ = new_key("off", owner_user_id="u5")
    plain, _ = new_key("plain")
    owners = [
        Owner(user_id="u1", disabled=False, wallet_id="user:u1", multiplier=1.0),
        Owner(user_id="u2", disabled=False, wallet_id="team:t", multiplier=2.0),
        Owner(user_id="u3", disabled=False, wallet_id="team:t", multiplier=1.0),
        Owner(user_id="u5", disabled=True, wallet_id="user:u5", multiplier=1.0),
    ]
    wallets = [Wallet(id="team:t", credited_units=100, spent_units=30)]
    by_key, cached = ownerships([solo, team1, team2, gone, disabled, plain], owners, wallets)
    assert plain.id not in by_key
    assert by_key[gone.id].owner is None and by_key[disabled.id].owner is None  # their keys stop working
    assert by_key[team1.id].wallet is by_key[team2.id].wallet is cached["team:t"]
    assert by_key[team1.id].multiplier == 2.0 and by_key[solo.id].wallet is cached["user:u1"]
    team = cached["team:t"]
    assert team.balance_units({team1.id: 5, team2.id: 7, solo.id: 100}) == 100 - 30 - 12
    assert cached["user:u1"].balance_units({}) == 0


def test_the_dummy_hash_costs_what_a_real_one_does() -> None:
    from argon2 import PasswordHasher
    from argon2.exceptions import VerifyMismatchError

    from omnirelay.state import passwords

    hasher = PasswordHasher()
    assert not hasher.check_needs_rehash(passwords.DUMMY_HASH)  # same parameters as new hashes
    try:
        hasher.verify(passwords.DUMMY_HASH, "guess")
        raise AssertionError("the dummy hash must match nothing guessable")
    except VerifyMismatchError:
        pass
    assert passwords.verify_password("omnirelay-dummy-password", None) is False  # unknown user: never a match
