"""Resolving secret references (``{env}``, ``{file}``, ``{credential}``) to values.

A missing secret is a :class:`SecretError` that names the secret and where it was looked
for, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from triggerd.errors import SecretError
from triggerd.model import SecretRef


def _credential_path(name: str, environ: Mapping[str, str]) -> Path | None:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory or "/" in name or name in (".", ".."):
        return None
    return Path(directory) / name


def resolve_secret(name: str, ref: SecretRef, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if ref.env is not None:
        value = env.get(ref.env)
        if value is None or value == "":
            raise SecretError(
                f"secret {name} is missing: environment variable {ref.env} is not set"
            )
        return value
    if ref.file is not None:
        path = Path(ref.file)
    else:
        assert ref.credential is not None
        found = _credential_path(ref.credential, env)
        if found is None:
            raise SecretError(
                f"secret {name} is missing: credential {ref.credential} needs"
                " $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"
            )
        path = found
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise SecretError(f"secret {name} is missing: cannot read {ref.describe()}") from None
    # Files conventionally end with a newline that is not part of the secret.
    value = text.rstrip("\r\n")
    if not value:
        raise SecretError(f"secret {name} is missing: {ref.describe()} is empty")
    return value


def resolve_secrets(
    refs: Mapping[str, SecretRef], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    return {name: resolve_secret(name, ref, environ) for name, ref in refs.items()}


def secret_ref_from_json(doc: Mapping[str, str]) -> SecretRef:
    return SecretRef(env=doc.get("env"), file=doc.get("file"), credential=doc.get("credential"))
