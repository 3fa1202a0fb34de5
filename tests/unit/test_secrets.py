"""``{file: PATH}`` secrets are read only under $CREDENTIALS_DIRECTORY and ``[daemon]
secret_roots`` (issue 12 item 8): an applied definition must not be a way to read any file
the daemon can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerd.errors import SecretError
from triggerd.model import SecretRef
from triggerd.secrets import resolve_secret

OUTSIDE = ("is outside the secret directories ($CREDENTIALS_DIRECTORY and [daemon]"
           " secret_roots); add its directory to [daemon] secret_roots")


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    roots = {name: tmp_path / name for name in ("root", "credentials", "elsewhere")}
    for directory in roots.values():
        directory.mkdir()
    (roots["root"] / "token").write_text("in-root\n")
    (roots["credentials"] / "token").write_text("in-credentials\n")
    (roots["elsewhere"] / "token").write_text("private\n")
    return roots


def refused(name: str, ref: SecretRef, **kwargs: object) -> str:
    with pytest.raises(SecretError) as caught:
        resolve_secret(name, ref, **kwargs)  # type: ignore[arg-type]
    return caught.value.message


def test_a_file_under_a_configured_root_is_read(layout: dict[str, Path]) -> None:
    ref = SecretRef(file=str(layout["root"] / "token"))
    assert resolve_secret("T", ref, {}, roots=(str(layout["root"]),)) == "in-root"


def test_a_file_under_the_credentials_directory_is_read(layout: dict[str, Path]) -> None:
    ref = SecretRef(file=str(layout["credentials"] / "token"))
    env = {"CREDENTIALS_DIRECTORY": str(layout["credentials"])}
    assert resolve_secret("T", ref, env) == "in-credentials"


def test_a_file_outside_every_root_is_refused_unread(layout: dict[str, Path]) -> None:
    path = layout["elsewhere"] / "token"
    env = {"CREDENTIALS_DIRECTORY": str(layout["credentials"])}
    message = refused("T", SecretRef(file=str(path)), environ=env,
                      roots=(str(layout["root"]),))
    assert message == f"secret T is refused: file {path} {OUTSIDE}"
    assert "private" not in message


def test_without_roots_or_credentials_every_file_is_refused(layout: dict[str, Path]) -> None:
    path = layout["root"] / "token"
    assert refused("T", SecretRef(file=str(path)), environ={}) == (
        f"secret T is refused: file {path} {OUTSIDE}")


def test_dot_dot_cannot_leave_a_root(layout: dict[str, Path]) -> None:
    path = f"{layout['root']}/../elsewhere/token"
    assert refused("T", SecretRef(file=path), environ={}, roots=(str(layout["root"]),)) == (
        f"secret T is refused: file {path} (it resolves to {layout['elsewhere'] / 'token'})"
        f" {OUTSIDE}")


def test_a_symlink_in_a_root_pointing_outside_is_refused(layout: dict[str, Path]) -> None:
    link = layout["root"] / "link"
    link.symlink_to(layout["elsewhere"] / "token")
    assert refused("T", SecretRef(file=str(link)), environ={},
                   roots=(str(layout["root"]),)) == (
        f"secret T is refused: file {link} (it resolves to {layout['elsewhere'] / 'token'})"
        f" {OUTSIDE}")


def test_a_root_named_through_a_symlink_still_holds_its_files(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(layout["root"])
    ref = SecretRef(file=str(alias / "token"))
    assert resolve_secret("T", ref, {}, roots=(str(alias),)) == "in-root"
    ref = SecretRef(file=str(layout["root"] / "token"))
    assert resolve_secret("T", ref, {}, roots=(str(alias),)) == "in-root"


def test_a_sibling_with_the_root_as_prefix_is_outside(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root-other").mkdir()
    path = tmp_path / "root-other" / "token"
    path.write_text("x")
    assert refused("T", SecretRef(file=str(path)), environ={},
                   roots=(str(tmp_path / "root"),)) == (
        f"secret T is refused: file {path} {OUTSIDE}")


def test_an_unset_and_an_empty_variable_are_told_apart() -> None:
    """Both leave the secret missing; the message said "is not set" for an empty one."""
    ref = SecretRef(env="API_KEY")
    with pytest.raises(SecretError, match=r"environment variable API_KEY is not set$"):
        resolve_secret("T", ref, {})
    with pytest.raises(SecretError, match=r"environment variable API_KEY is empty$"):
        resolve_secret("T", ref, {"API_KEY": ""})
    assert resolve_secret("T", ref, {"API_KEY": "k"}) == "k"
