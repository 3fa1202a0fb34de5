"""Resolving secret references (``{env}``, ``{file}``, ``{credential}``) to values.

A missing secret is a :class:`SecretError` that names the secret and where it was looked
for, never a value. ``{file: PATH}`` is read only under ``$CREDENTIALS_DIRECTORY`` and the
directories of ``[daemon] secret_roots``: whoever applies a definition chooses the path, and
must not be able to read any file the daemon can (and send it out in an http node).

Whoever applies a definition also chooses its secrets, and with tenants that may be a
token of one tenant: a :class:`SecretPolicy` confines each tenant to the secrets its
``[tenants.NAME] secrets`` patterns list, and no tenant may read the daemon's own (its
configuration's environment variables, the database password, the API token and the
resume key), which would give a workflow's author every tenant.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from triggerd.config import Settings, is_setting_env
from triggerd.errors import Problem, SecretError
from triggerd.model import DEFAULT_TENANT, SecretRef, WebhookConfig, WorkflowSpec

# The daemon's own credentials ($CREDENTIALS_DIRECTORY names; triggerd/api/auth.py and
# triggerd/executor/resume.py) and the resume key it keeps in its state directory.
DAEMON_CREDENTIALS = frozenset({"api-token", "resume-key"})
STATE_KEY_FILE = "resume.key"
# The first start's all-tenant admin token (triggerd/api/auth.py writes it).
STATE_TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret
STATE_FILES = (STATE_KEY_FILE, STATE_TOKEN_FILE)  # the daemon's own, in its state directory
# What libpq and asyncpg read: the database's password or where it is kept.
DATABASE_ENV = frozenset({"PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE"})


@dataclass(frozen=True, kw_only=True)
class SecretPolicy:
    """Which secrets one tenant's workflows and webhook triggers may reference."""

    tenant: str
    # Patterns of "env:NAME", "file:/PATH", "credential:NAME"; None: any (but the daemon's).
    allowed: tuple[str, ...] | None
    daemon_files: frozenset[str]  # real paths of the daemon's own keys and configuration
    # Real paths of directories whose every file is the daemon's (the embedded database's).
    daemon_dirs: frozenset[str] = frozenset()

    def refusal(self, ref: SecretRef, real_file: str | None = None) -> str | None:
        """Why ``ref`` may not be read in this tenant (``real_file``: a file secret's
        resolved path), or None."""
        if ref.env is not None and (is_setting_env(ref.env) or ref.env in DATABASE_ENV):
            return (f"environment variable {ref.env} is the daemon's own configuration;"
                    " no workflow may read it")
        if ref.credential is not None and ref.credential in DAEMON_CREDENTIALS:
            return f"credential {ref.credential} is the daemon's own; no workflow may read it"
        if ref.file is not None:
            real = real_file or os.path.realpath(ref.file)
            if real in self.daemon_files:
                return f"file {ref.file} is the daemon's own key or configuration"
            if any(_within(real, d) for d in self.daemon_dirs):
                return f"file {ref.file} is in the daemon's own database directory"
        if self.allowed is None:
            return None
        described = ref.describe()
        # A file by its real path: "/srv/acme/../globex/key" or a link is not under acme.
        matched = (described if ref.file is None
                   else f"file:{real_file or os.path.realpath(ref.file)}")
        if any(fnmatchcase(matched, pattern) for pattern in self.allowed):
            return None
        listed = "; it lists none" if not self.allowed else ""
        return (f"{described} is not among the secrets tenant {self.tenant} may use"
                f" ([tenants.{self.tenant}] secrets{listed})")


def secret_policy(settings: Settings, tenant: str, environ: Mapping[str, str]) -> SecretPolicy:
    """The policy of ``tenant`` under ``settings``."""
    allowed = settings.tenant(tenant).secrets
    if allowed is None and tenant == DEFAULT_TENANT:
        pass  # the default tenant (one team, no tenants): any secret but the daemon's
    elif allowed is None:
        allowed = ()
    # The resume key and the first start's all-tenant admin token (api-token) that the
    # daemon writes there.
    own = [str(settings.state_dir / name) for name in STATE_FILES]
    if settings.executor.resume_key_file:
        own.append(str(Path(settings.executor.resume_key_file).expanduser()))
    if settings.source:
        own.append(settings.source)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        own += [os.path.join(directory, name) for name in DAEMON_CREDENTIALS]
    return SecretPolicy(tenant=tenant, allowed=allowed,
                        daemon_files=frozenset(os.path.realpath(p) for p in own),
                        daemon_dirs=frozenset({os.path.realpath(settings.state_dir / "postgres")}))


def policies_fingerprint(settings: Settings, environ: Mapping[str, str]) -> str:
    """What every tenant's policy depends on, as text: an apply's fingerprint includes it,
    so files re-applied under a configuration that refuses their secrets are checked again
    (the fast path of unchanged files skipped that check)."""
    tenants = sorted((t.name, repr(t.secrets)) for t in settings.tenants)
    return repr((tenants, str(settings.state_dir), settings.executor.resume_key_file,
                 settings.source, environ.get("CREDENTIALS_DIRECTORY")))


class SecretPolicies:
    """Each tenant's :class:`SecretPolicy` under one configuration, built the first time
    it is asked for (building one resolves the daemon's key paths): the executor's runs,
    a route table's secrets and a document's references ask per tenant."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ
        self._built: dict[str, SecretPolicy] = {}

    def of(self, tenant: str) -> SecretPolicy:
        policy = self._built.get(tenant)
        if policy is None:
            policy = self._built[tenant] = secret_policy(self._settings, tenant, self._environ)
        return policy


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
    policy: SecretPolicy | None = None,
) -> str:
    env = os.environ if environ is None else environ
    if policy is not None:
        refused = policy.refusal(
            ref, None if ref.file is None else os.path.realpath(ref.file))
        if refused is not None:
            raise SecretError(f"secret {name} is refused: {refused}")
    if ref.env is not None:
        value = env.get(ref.env)
        if value is None or value == "":
            state = "is not set" if value is None else "is empty"
            raise SecretError(f"secret {name} is missing: environment variable {ref.env} {state}")
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
    policy: SecretPolicy | None = None,
) -> dict[str, str]:
    return {name: resolve_secret(name, ref, environ, roots=roots, policy=policy)
            for name, ref in refs.items()}


def secret_ref_from_json(doc: Mapping[str, str]) -> SecretRef:
    return SecretRef(env=doc.get("env"), file=doc.get("file"), credential=doc.get("credential"))


def _secret_refs(specs: Sequence[WorkflowSpec]) -> list[tuple[str, str, SecretRef]]:
    """(tenant, path in the document, reference) of every secret the workflows name."""
    found: list[tuple[str, str, SecretRef]] = []
    for index, spec in enumerate(specs):
        where = f"$.workflows[{index}]"
        found += [(spec.tenant_id, f"{where}.secrets.{name}", ref)
                  for name, ref in spec.secrets.items()]
        for number, trigger in enumerate(spec.triggers):
            config = trigger.config
            if isinstance(config, WebhookConfig):
                at = f"{where}.triggers[{number}].auth.secret"
                listed = isinstance(config.auth.secret, tuple)
                found += [
                    (spec.tenant_id, f"{at}[{i}]" if listed else at, ref)
                    for i, ref in enumerate(config.auth.secrets)
                ]
    return found


def secret_policy_problems(
    label: str, specs: Sequence[WorkflowSpec], settings: Settings, environ: Mapping[str, str]
) -> list[Problem]:
    """Secrets of one document's workflows that their tenant may not use (see
    :class:`SecretPolicy`): refused by ``check``, ``apply`` and the admin API."""
    policies = SecretPolicies(settings, environ)
    problems: list[Problem] = []
    for tenant, path, ref in _secret_refs(specs):
        refused = policies.of(tenant).refusal(ref)
        if refused is not None:
            kind = "env" if ref.env is not None else "file" if ref.file is not None else (
                "credential")
            problems.append(Problem(label, f"{path}.{kind}", refused))
    return problems


def refused_secret_problems(
    label: str, specs: Sequence[WorkflowSpec], settings: Settings, environ: Mapping[str, str]
) -> list[Problem]:
    """What ``check`` and ``triggerd test`` refuse of one file's secrets under this
    configuration: those its tenant may not use, and ``{file: PATH}`` ones the daemon
    would not read."""
    return (secret_policy_problems(label, specs, settings, environ)
            + file_secret_problems(label, specs, settings.daemon.secret_roots, environ))


def file_secret_problems(
    label: str, specs: Sequence[WorkflowSpec], roots: Sequence[str], environ: Mapping[str, str]
) -> list[Problem]:
    """``{file: PATH}`` secrets of one file's workflows (in file order) that the daemon
    would refuse to read, for ``triggerd check``."""
    problems: list[Problem] = []
    for _, path, ref in _secret_refs(specs):
        if ref.file is not None:
            _, refused = secret_file_refusal(ref.file, roots, environ)
            if refused is not None:
                problems.append(Problem(label, f"{path}.file", refused))
    return problems
