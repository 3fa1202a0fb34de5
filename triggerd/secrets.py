"""Resolving secret references (``{env}``, ``{file}``, ``{credential}``) to values.

A missing secret is a :class:`SecretError` that names the secret and where it was looked
for, never a value. ``{file: PATH}`` is read only under ``$CREDENTIALS_DIRECTORY`` and the
directories of ``[daemon] secret_roots``: whoever applies a definition chooses the path, and
must not be able to read any file the daemon can (and send it out in an http node).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from triggerd.errors import Problem, SecretError
from triggerd.model import SecretRef, WebhookConfig, WorkflowSpec


def _credential_path(name: str, environ: Mapping[str, str]) -> Path | None:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory or "/" in name or name in (".", ".."):
        return None
    return Path(directory) / name


def _within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def secret_file_refusal(
    path: str, roots: Sequence[str], environ: Mapping[str, str]
) -> tuple[str, str | None]:
    """The real path of ``path`` (symlinks and ``..`` resolved) and, when it is outside
    ``$CREDENTIALS_DIRECTORY`` and ``roots``, why it is refused."""
    real = os.path.realpath(path)
    allowed = [*roots]
    if environ.get("CREDENTIALS_DIRECTORY"):
        allowed.append(environ["CREDENTIALS_DIRECTORY"])
    if any(_within(real, os.path.realpath(root)) for root in allowed if os.path.isabs(root)):
        return real, None
    resolved = "" if real == path else f" (it resolves to {real})"
    return real, (
        f"file {path}{resolved} is outside the secret directories ($CREDENTIALS_DIRECTORY"
        " and [daemon] secret_roots); add its directory to [daemon] secret_roots"
    )


def _read_no_follow(path: str) -> str:
    # The checked real path, opened without following a symlink swapped in since the check.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, encoding="utf-8") as handle:
        return handle.read()


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def resolve_secret(
    name: str,
    ref: SecretRef,
    environ: Mapping[str, str] | None = None,
    *,
    roots: Sequence[str] = (),
) -> str:
    env = os.environ if environ is None else environ
    if ref.env is not None:
        value = env.get(ref.env)
        if value is None or value == "":
            raise SecretError(
                f"secret {name} is missing: environment variable {ref.env} is not set"
            )
        return value
    if ref.file is not None:
        real, refused = secret_file_refusal(ref.file, roots, env)
        if refused is not None:
            raise SecretError(f"secret {name} is refused: {refused}")
        path = Path(real)
        read = _read_no_follow
    else:
        assert ref.credential is not None
        found = _credential_path(ref.credential, env)
        if found is None:
            raise SecretError(
                f"secret {name} is missing: credential {ref.credential} needs"
                " $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"
            )
        path = found
        read = _read_text
    try:
        text = read(str(path))
    except (OSError, UnicodeDecodeError):
        raise SecretError(f"secret {name} is missing: cannot read {ref.describe()}") from None
    # Files conventionally end with a newline that is not part of the secret.
    value = text.rstrip("\r\n")
    if not value:
        raise SecretError(f"secret {name} is missing: {ref.describe()} is empty")
    return value


def resolve_secrets(
    refs: Mapping[str, SecretRef],
    environ: Mapping[str, str] | None = None,
    *,
    roots: Sequence[str] = (),
) -> dict[str, str]:
    return {name: resolve_secret(name, ref, environ, roots=roots) for name, ref in refs.items()}


def secret_ref_from_json(doc: Mapping[str, str]) -> SecretRef:
    return SecretRef(env=doc.get("env"), file=doc.get("file"), credential=doc.get("credential"))


def file_secret_problems(
    label: str, specs: Sequence[WorkflowSpec], roots: Sequence[str], environ: Mapping[str, str]
) -> list[Problem]:
    """``{file: PATH}`` secrets of one file's workflows (in file order) that the daemon
    would refuse to read, for ``triggerd check``."""
    found: list[tuple[str, SecretRef]] = []
    for index, spec in enumerate(specs):
        where = f"$.workflows[{index}]"
        found += [(f"{where}.secrets.{name}", ref) for name, ref in spec.secrets.items()]
        for number, trigger in enumerate(spec.triggers):
            config = trigger.config
            if isinstance(config, WebhookConfig):
                at = f"{where}.triggers[{number}].auth.secret"
                listed = isinstance(config.auth.secret, tuple)
                found += [
                    (f"{at}[{i}]" if listed else at, ref)
                    for i, ref in enumerate(config.auth.secrets)
                ]
    problems: list[Problem] = []
    for path, ref in found:
        if ref.file is not None:
            _, refused = secret_file_refusal(ref.file, roots, environ)
            if refused is not None:
                problems.append(Problem(label, f"{path}.file", refused))
    return problems
