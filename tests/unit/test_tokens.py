"""Admin API tokens as values: form, hash, names, roles and what each role may do."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from triggerd.errors import UsageError
from triggerd.tokens import (
    Principal,
    Role,
    addressed_tenant,
    check_name,
    check_tenant,
    display_prefix,
    generate_token,
    hash_token,
    is_token_form,
    method_refusal,
    parse_expiry,
    parse_role,
)


def test_generated_tokens_have_the_documented_form_and_differ() -> None:
    tokens = {generate_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert token.startswith("tgd_") and len(token) == 47
        assert is_token_form(token)
        assert display_prefix(token) == token[:12]


def test_hash_is_sha256_of_the_whole_token() -> None:
    token = generate_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).digest()
    assert len(hash_token(token)) == 32


@pytest.mark.parametrize(
    "text",
    ["", "tgd_", "wrong", "tgd_" + "a" * 42, "tgd_" + "a" * 44, "TGD_" + "a" * 43,
     "tgd_" + "a" * 42 + "=", "tgd_" + "a" * 42 + "\n", "xtgd_" + "a" * 43],
)
def test_only_the_token_form_is_looked_up(text: str) -> None:
    assert not is_token_form(text)


@pytest.mark.parametrize("name", ["ci", "a", "deploy-bot.prod_2", "0", "x" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "token name '' is invalid: use 1-64 characters of a-z, 0-9, '_', '.' and '-',"
             " starting with a letter or digit"),
        ("CI", "token name 'CI' is invalid: use 1-64 characters of a-z, 0-9, '_', '.' and"
               " '-', starting with a letter or digit"),
        ("x" * 65, f"token name {'x' * 65!r} is invalid: use 1-64 characters of a-z, 0-9,"
                   " '_', '.' and '-', starting with a letter or digit"),
        ("-x", "token name '-x' is invalid: use 1-64 characters of a-z, 0-9, '_', '.' and"
               " '-', starting with a letter or digit"),
        ("a b", "token name 'a b' is invalid: use 1-64 characters of a-z, 0-9, '_', '.' and"
                " '-', starting with a letter or digit"),
        ("ok\n", "token name 'ok\\n' is invalid: use 1-64 characters of a-z, 0-9, '_', '.'"
                 " and '-', starting with a letter or digit"),
    ],
)
def test_bad_names(name: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_name(name)
    assert caught.value.message == message


def test_tenant_and_role_checks() -> None:
    assert check_tenant("acme") == "acme"
    with pytest.raises(UsageError) as caught:
        check_tenant("Acme Inc")
    assert caught.value.message == (
        "tenant 'Acme Inc' is invalid: use 1-64 characters of a-z, 0-9, '_' and '-',"
        " starting with a letter or digit"
    )
    assert parse_role("viewer") is Role.VIEWER
    with pytest.raises(UsageError) as caught:
        parse_role("owner")
    assert caught.value.message == "role: 'owner' is not one of admin, viewer"


def test_viewers_only_read() -> None:
    viewer = Principal(name="dash", role=Role.VIEWER, tenant=None)
    admin = Principal(name="ops", role=Role.ADMIN, tenant=None)
    assert method_refusal(viewer, "GET") is None
    assert method_refusal(viewer, "HEAD") is None
    for method in ("POST", "DELETE", "PUT", "PATCH"):
        assert method_refusal(admin, method) is None
        assert method_refusal(viewer, method) == (
            f"token 'dash' has the viewer role: it may only read (GET); {method} needs an"
            " admin token"
        )


def test_addressed_tenant() -> None:
    every = Principal(name="a", role=Role.ADMIN, tenant=None)
    acme = Principal(name="a", role=Role.VIEWER, tenant="acme")
    # An all-tenant token works in every tenant, or in the one it names.
    assert addressed_tenant(every, None) == (None, None)
    assert addressed_tenant(every, "globex") == ("globex", None)
    # A scoped token works in its own; naming another finds nothing (a 404, not a 403).
    assert addressed_tenant(acme, None) == ("acme", None)
    assert addressed_tenant(acme, "acme") == ("acme", None)
    assert addressed_tenant(acme, "globex") == (
        "acme", "nothing here belongs to tenant 'globex'")
    assert addressed_tenant(every, "Bad Name")[1] == (
        "tenant: 'Bad Name' is invalid: use 1-64 characters of a-z, 0-9, '_' and '-',"
        " starting with a letter or digit")


def test_token_lifetimes() -> None:
    assert parse_expiry(None) is None
    assert parse_expiry("90d") == timedelta(days=90)
    assert parse_expiry("1h30m") == timedelta(minutes=90)
    assert parse_expiry("1m") == timedelta(minutes=1)
    for text, message in [
        ("30s", "--expires-in: '30s' is too short (at least 1m)"),
        ("0s", "--expires-in: '0s' is too short (at least 1m)"),
        ("90", "--expires-in: '90' is not a duration (use a number and a unit: ms, s, m, h,"
               " d; e.g. '500ms', '30s', '6h')"),
        ("-1d", "--expires-in: '-1d' is not a duration (use a number and a unit: ms, s, m,"
                " h, d; e.g. '500ms', '30s', '6h')"),
        ("99999d", "--expires-in: '99999d' is too long a duration (at most 36500d)"),
    ]:
        with pytest.raises(UsageError) as caught:
            parse_expiry(text)
        assert caught.value.message == message, text


def test_audit_targets_as_the_lists_print_them() -> None:
    from triggerd.model import labelled_target

    run = "3f2a9c1e-0b7d-4c1e-9a2b-1234567890ab"
    assert labelled_target("acme:billing/hourly", None) == ("billing/hourly", "acme")
    assert labelled_target("acme:billing/hourly", "acme") == ("billing/hourly", "acme")
    # Another tenant's name in a scoped view matches nothing there.
    assert labelled_target("globex:billing/x", "acme") == ("globex:billing/x", "acme")
    # A bare name is the default tenant's, as lists print it; ids and files any tenant's.
    assert labelled_target("billing/hourly", None) == ("billing/hourly", "default")
    assert labelled_target("billing", None) == ("billing", "default")
    assert labelled_target("billing", "acme") == ("billing", "acme")
    assert labelled_target(run, None) == (run, None)
    assert labelled_target("defs.yaml", None) == ("defs.yaml", None)
