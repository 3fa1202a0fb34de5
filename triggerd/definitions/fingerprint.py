"""The fingerprint of what an ``apply`` reads: the files' bytes, their order, the options
and the code that turns them into rows.

Two applies with the same fingerprint against the same stored rows decide the same thing,
so a re-apply of unchanged files can be answered without parsing them again (see
:mod:`triggerd.operations.apply`): any byte of any file, its order, ``--prune``, the
installed node types or any source file of triggerd changes it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection, Sequence
from importlib.metadata import version
from pathlib import Path

import yaml

# Bumped when what the fingerprint covers changes meaning.
_FORMAT = b"triggerd-apply-fingerprint-1"


@functools.cache
def code_fingerprint() -> str:
    """A digest of every source and data file of the installed triggerd package and of the
    versions of the libraries that read definition files (a new release, or an edited
    checkout, may build other rows from the same file)."""
    digest = hashlib.sha256(_FORMAT)
    root = Path(__file__).resolve().parent.parent
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json", ".sql")):
        data = path.read_bytes()
        name = path.relative_to(root).as_posix().encode()
        digest.update(b"%d:%s%d:" % (len(name), name, len(data)) + data)
    for library in (yaml.__version__, version("jsonschema"), str(yaml.__with_libyaml__)):
        digest.update(b"%d:%s" % (len(library), library.encode()))
    return digest.hexdigest()


def files_fingerprint(
    contents: Sequence[bytes], *, prune: bool, code: str, node_types: Collection[str],
    tenant: str | None = None, policies: str = "",
) -> str:
    """The digest of one apply's inputs: each file's bytes in order (length-prefixed, so
    where one ends and the next begins counts), ``prune``, the code digest, the node
    types the files are checked against and the secret policies they are checked under."""
    digest = hashlib.sha256(_FORMAT)
    # The tenant files without `tenant:` get (apply --tenant) is part of what they mean.
    for part in (code.encode(), b"prune" if prune else b"keep",
                 b"tenant:" + (tenant or "").encode(),
                 b"policies:" + policies.encode("utf-8", "surrogateescape"), *sorted(
        t.encode() for t in node_types
    )):
        digest.update(b"%d:" % len(part) + part)
    digest.update(b"files:%d:" % len(contents))
    for data in contents:
        digest.update(b"%d:" % len(data) + data)
    return digest.hexdigest()
