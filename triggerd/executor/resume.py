"""Resume copies of node outputs: the full, unredacted value of an output whose stored
display copy differs from it (truncated above ``[executor] max_output_bytes``, or with
secrets masked). A run resumed after a wait, a hand-back or a crash reads these back, so it
sees exactly what an uninterrupted run would have seen.

The copies are encrypted at rest with AES-256-GCM. The key comes from, in this order,
``[executor] resume_key_file``, the systemd credential ``resume-key``
(``$CREDENTIALS_DIRECTORY/resume-key``) or ``<state_dir>/resume.key``, created once. Each
copy is bound to its row (execution, node, attempt) as associated data, so a copy moved to
another row does not decrypt either.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from triggerd.config import Settings
from triggerd.errors import ConfigError, ResumeCopyError
from triggerd.model import JSON

CREDENTIAL_NAME: Final = "resume-key"
KEY_FILE_NAME: Final = "resume.key"
KEY_BYTES: Final = 32
# Layout of a copy: format byte, key id, nonce, AES-GCM ciphertext with its tag.
_FORMAT: Final = b"\x01"
_KEY_ID_BYTES: Final = 8
_NONCE_BYTES: Final = 12
_HEADER: Final = 1 + _KEY_ID_BYTES + _NONCE_BYTES

RESUME_KEY_MISMATCH: Final = "RESUME_KEY_MISMATCH"
RESUME_COPY_INVALID: Final = "RESUME_COPY_INVALID"
RESUME_COPY_MISSING: Final = "RESUME_COPY_MISSING"
MAKE_KEY_HINT: Final = "make one with: head -c 32 /dev/urandom | base64"


@dataclass(frozen=True, init=False, repr=False, eq=False)
class ResumeKey:
    """The key of the resume copies. ``key_id`` names it in logs and errors (a hash, not
    the key), so operators can tell whether two replicas share one."""

    key_id: str
    source: str
    _raw_id: bytes = field(compare=False)
    _aead: AESGCM = field(compare=False)

    def __init__(self, secret: bytes, source: str = "") -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError(f"a resume key has {KEY_BYTES} bytes, not {len(secret)}")
        raw_id = hashlib.sha256(b"triggerd resume key id\0" + secret).digest()[:_KEY_ID_BYTES]
        object.__setattr__(self, "key_id", raw_id.hex())
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "_raw_id", raw_id)
        object.__setattr__(self, "_aead", AESGCM(secret))

    def __repr__(self) -> str:
        return f"ResumeKey(key_id={self.key_id!r}, source={self.source!r})"

    def encrypt(self, text: str, *, execution_id: str, node_id: str, attempt: int) -> bytes:
        """The copy of one output (its JSON ``text``) for one node row."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(
            nonce, text.encode(), _associated(execution_id, node_id, attempt)
        )
        return _FORMAT + self._raw_id + nonce + sealed

    def decrypt(self, blob: bytes, *, execution_id: str, node_id: str, attempt: int) -> JSON:
        """The output a copy holds; :class:`ResumeCopyError` when this key cannot read it."""
        where = f"the resume copy of node {node_id!r}"
        if len(blob) < _HEADER or blob[:1] != _FORMAT:
            raise ResumeCopyError(
                RESUME_COPY_INVALID, f"{where} is not in a format this build reads"
            )
        key_id = blob[1 : 1 + _KEY_ID_BYTES]
        if key_id != self._raw_id:
            raise ResumeCopyError(
                RESUME_KEY_MISMATCH,
                f"{where} was encrypted with another key than this process's (key id"
                f" {key_id.hex()}, this process has {self.key_id}); every replica must use"
                " the same [executor] resume_key_file",
            )
        nonce = blob[1 + _KEY_ID_BYTES : _HEADER]
        try:
            plain = self._aead.decrypt(
                nonce, blob[_HEADER:], _associated(execution_id, node_id, attempt)
            )
        except InvalidTag:
            raise ResumeCopyError(
                RESUME_COPY_INVALID, f"{where} is damaged or belongs to another row"
            ) from None
        value: JSON = json.loads(plain)
        return value


def _associated(execution_id: str, node_id: str, attempt: int) -> bytes:
    return json.dumps([execution_id, node_id, attempt]).encode()


# --- the key: file I/O only, at start ---------------------------------------------------


def parse_key(data: bytes, where: str) -> bytes:
    """A key file holds 32 raw bytes or their base64 text (a trailing newline is fine)."""
    if len(data) == KEY_BYTES:
        return data
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != KEY_BYTES:
        raise ConfigError(
            f"{where}: not a resume key (32 bytes, raw or base64); {MAKE_KEY_HINT}"
        )
    return decoded


def _read_key(path: Path, where: str) -> ResumeKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot read the resume key {path}: {exc.strerror or exc}; {MAKE_KEY_HINT}"
        ) from None
    return ResumeKey(parse_key(data, where), source=str(path))


def create_key_file(path: Path) -> None:
    """Write a new random key to ``path`` unless it exists. The file appears whole or not
    at all (written aside, then hard-linked into place), so processes starting together
    all end up reading the one that won."""
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        return
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first: keep its key
            os.link(aside, path)
    finally:
        os.unlink(aside)


def resume_key_source(settings: Settings, environ: Mapping[str, str]) -> Path:
    """Where the daemon under ``settings`` reads its resume key (load_resume_key's order),
    whether or not it exists yet."""
    if settings.executor.resume_key_file:
        return Path(settings.executor.resume_key_file).expanduser()
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).exists():
        return Path(credentials) / CREDENTIAL_NAME
    return settings.state_dir / KEY_FILE_NAME


def existing_resume_key(settings: Settings, environ: Mapping[str, str]) -> ResumeKey | None:
    """The key the daemon would use, without creating one (None: it would make a new one)."""
    path = resume_key_source(settings, environ)
    if not path.exists():
        return None
    return _read_key(path, str(path))


def load_resume_key(settings: Settings, environ: Mapping[str, str]) -> ResumeKey:
    """The configured key file, else the systemd credential, else the state directory's key
    (created the first time). A bad or unreadable key is a :class:`ConfigError`."""
    configured = settings.executor.resume_key_file
    if configured:
        # Never created here: replicas that each made their own would not share it.
        return _read_key(Path(configured).expanduser(), "executor.resume_key_file")
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        credential = Path(credentials) / CREDENTIAL_NAME
        if credential.exists():
            return _read_key(credential, f"credential {CREDENTIAL_NAME}")
    path = settings.state_dir / KEY_FILE_NAME
    try:
        create_key_file(path)
    except OSError as exc:
        raise ConfigError(
            f"daemon.state_dir: cannot create the resume key {path}: {exc.strerror or exc}"
        ) from None
    return _read_key(path, "daemon.state_dir")
