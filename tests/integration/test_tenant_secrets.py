"""A tenant's workflows read only the secrets ``[tenants.NAME] secrets`` lists, and no
workflow reads the daemon's own (its settings' environment, the database password, the
API token, the resume key): refused on apply and test runs over real loopback HTTP (422,
nothing stored), and at run time for rows stored before (the run fails, the webhook
answers 503), against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import apply_doc, final_status
from tests.integration.test_api_tokens import bearer, new_token
from tests.integration.test_tenants import make_client
from triggerd.config import ApiSettings, DaemonSettings, Settings, TenantSettings
from triggerd.executor.service import Executor
from triggerd.model import SecretRef
from triggerd.operations.actor import cli_actor
from triggerd.operations.triggers import FireRequest, fire
from triggerd.secrets import DAEMON_CREDENTIALS, STATE_KEY_FILE, secret_policy

Client = TestClient[Any, Any]

ACME = TenantSettings(name="acme", secrets=("env:ACME_*", "file:/srv/acme/*"))


def leaky(tenant: str | None, ref: dict[str, str], key: str = "exfil") -> dict[str, Any]:
    """A workflow that copies a secret into its output, character by character."""
    doc: dict[str, Any] = {"workflows": [{
        "key": key,
        "secrets": {"S": ref},
        "graph": {"nodes": [{"id": "a", "type": "set",
                             "params": {"value": {"chars": "{{ secrets.S | list }}"}}}]},
        "triggers": [{"name": "go", "type": "manual"}],
    }]}
    if tenant is not None:
        doc["tenant"] = tenant
    return doc


@pytest.fixture
async def api(aiohttp_client: Any, pool: asyncpg.Pool, dsn: str) -> Any:
    settings = Settings(api=ApiSettings(token="configured-token"), tenants=(ACME,))
    client, ingress = await make_client(aiohttp_client, pool, dsn, settings)
    yield client
    await ingress.stop()


async def test_a_tenant_token_cannot_apply_or_test_with_secrets_its_tenant_may_not_read(
    api: Client, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBEX_HOOK_SECRET", "globex-value")
    acme = bearer(await new_token(pool, "acme-admin", tenant="acme"))
    refused = await api.post("/api/v1/definitions", headers=acme,
                             json=leaky("acme", {"env": "GLOBEX_HOOK_SECRET"}))
    assert refused.status == 422
    problems = (await refused.json())["problems"]
    assert [(p["path"], p["message"]) for p in problems] == [(
        "$.workflows[0].secrets.S.env",
        "env:GLOBEX_HOOK_SECRET is not among the secrets tenant acme may use"
        " ([tenants.acme] secrets)")]
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0  # nothing stored
    tested = await api.post("/api/v1/test-runs", headers=acme, json={
        "definition": leaky(None, {"env": "GLOBEX_HOOK_SECRET"}), "workflow": "exfil",
        "dry": True})
    assert tested.status == 422
    assert "globex-value" not in await tested.text()
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    # What the tenant lists is its own.
    allowed = await api.post("/api/v1/definitions", headers=acme,
                             json=leaky("acme", {"env": "ACME_KEY"}))
    assert allowed.status == 200, await allowed.text()


@pytest.mark.parametrize("ref, message", [
    ({"credential": "api-token"},
     "credential api-token is the daemon's own; no workflow may read it"),
    ({"credential": "resume-key"},
     "credential resume-key is the daemon's own; no workflow may read it"),
    ({"env": "TRIGGERD_API_TOKEN"},
     "environment variable TRIGGERD_API_TOKEN is the daemon's own configuration;"
     " no workflow may read it"),
    ({"env": "TRIGGERD_DATABASE_URL"},
     "environment variable TRIGGERD_DATABASE_URL is the daemon's own configuration;"
     " no workflow may read it"),
    ({"env": "PGPASSWORD"},
     "environment variable PGPASSWORD is the daemon's own configuration;"
     " no workflow may read it"),
])
async def test_no_tenant_reads_the_daemons_own_secrets(
    api: Client, pool: asyncpg.Pool, ref: dict[str, str], message: str
) -> None:
    root = bearer("configured-token")  # the all-tenant admin, applying to the default tenant
    refused = await api.post("/api/v1/definitions", headers=root, json=leaky(None, ref))
    assert refused.status == 422
    kind = next(iter(ref))
    assert [(p["path"], p["message"]) for p in (await refused.json())["problems"]] == [
        (f"$.workflows[0].secrets.S.{kind}", message)]
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0


async def test_a_run_stored_before_the_policy_cannot_read_what_its_tenant_may_not(
    pool: asyncpg.Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows applied without the check (an older triggerd, a narrowed list): the run fails
    with the reason, and the value never reaches a row."""
    monkeypatch.setenv("GLOBEX_HOOK_SECRET", "globex-value")
    monkeypatch.setenv("ACME_KEY", "acme-value")
    await apply_doc(pool, leaky("acme", {"env": "GLOBEX_HOOK_SECRET"}))
    await apply_doc(pool, leaky("acme", {"env": "ACME_KEY"}, key="own"))
    refused = await fire(pool, cli_actor("acme"), FireRequest(trigger="exfil/go"))
    own = await fire(pool, cli_actor("acme"), FireRequest(trigger="own/go"))
    executor = Executor(pool=pool, dsn=dsn, settings=Settings(tenants=(ACME,)))
    await executor.start()
    try:
        failed = await final_status(pool, refused.execution_id)
        ran = await final_status(pool, own.execution_id)
    finally:
        await executor.stop()
    assert (failed["status"], failed["error_code"]) == ("ERROR", "SECRET_MISSING")
    assert failed["error_message"] == (
        "secret S is refused: env:GLOBEX_HOOK_SECRET is not among the secrets tenant acme"
        " may use ([tenants.acme] secrets)")
    stored = await pool.fetchval("SELECT string_agg(coalesce(output::text, ''), '')"
                                 " FROM node_executions")
    assert "globex" not in (stored or "") and "g\", \"l\", \"o\"" not in (stored or "")
    assert ran["status"] == "SUCCESS"
    assert ran["output"] == {"chars": list("acme-value")}


async def test_a_tenants_webhook_cannot_verify_with_another_tenants_secret(
    aiohttp_client: Any, pool: asyncpg.Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBEX_HOOK_SECRET", "globex-value")
    for tenant in ("acme", None):
        doc: dict[str, Any] = {"workflows": [{
            "key": "w", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
            "triggers": [{"name": "h", "type": "webhook", "path": "in",
                          "auth": {"scheme": "token",
                                   "secret": {"env": "GLOBEX_HOOK_SECRET"}}}]}]}
        if tenant is not None:
            doc["tenant"] = tenant
        await apply_doc(pool, doc)
    client, ingress = await make_client(aiohttp_client, pool, dsn, Settings(tenants=(ACME,)))
    try:
        token = {"Authorization": "Bearer globex-value"}
        refused = await client.post("/tenants/acme/hooks/in", json={}, headers=token)
        assert refused.status == 503  # the operator's log says why; nothing is stored
        assert (await client.post("/hooks/in", json={}, headers=token)).status == 202
    finally:
        await ingress.stop()
    tenants = [r["tenant_id"] for r in await pool.fetch(
        "SELECT tenant_id FROM workflow_executions")]
    assert tenants == ["default"]


def test_the_policy_refuses_the_daemons_key_files_and_matches_real_paths(
    tmp_path: Path,
) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    acme_dir = tmp_path / "acme"
    acme_dir.mkdir()
    (acme_dir / "key").write_text("k\n")
    (acme_dir / "link").symlink_to(credentials / "api-token")
    settings = Settings(
        daemon=DaemonSettings(state_dir=str(state)),
        tenants=(TenantSettings(name="acme", secrets=(f"file:{acme_dir}/*",)),))
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    default = secret_policy(settings, "default", environ)
    for name in sorted(DAEMON_CREDENTIALS):
        assert default.refusal(SecretRef(file=str(credentials / name))) == (
            f"file {credentials / name} is the daemon's own key or configuration")
    assert default.refusal(SecretRef(file=str(state / STATE_KEY_FILE))) is not None
    # The first start's all-tenant admin token, and the embedded database's files: with the
    # state directory under [daemon] secret_roots, a tenant's admin read the token and
    # became an admin of every tenant.
    assert default.refusal(SecretRef(file=str(state / "api-token"))) == (
        f"file {state / 'api-token'} is the daemon's own key or configuration")
    (acme_dir / "token-link").symlink_to(state / "api-token")
    assert secret_policy(settings, "acme", environ).refusal(
        SecretRef(file=str(acme_dir / "token-link"))) is not None
    for name in ("postgres/postgresql.conf", "postgres/global/pg_control"):
        assert default.refusal(SecretRef(file=str(state / name))) == (
            f"file {state / name} is in the daemon's own database directory")
    assert default.refusal(SecretRef(file=str(state / "postgres-notes"))) is None
    assert default.refusal(SecretRef(env="ANY_OTHER")) is None  # the default tenant: any
    acme = secret_policy(settings, "acme", environ)
    assert acme.refusal(SecretRef(file=str(acme_dir / "key"))) is None
    # A link in an allowed directory to the daemon's key is still the daemon's key.
    assert acme.refusal(SecretRef(file=str(acme_dir / "link"))) is not None
    assert acme.refusal(SecretRef(file=str(acme_dir / ".." / "creds" / "x"))) is not None
    other = secret_policy(settings, "globex", environ)  # no list: nothing
    assert other.refusal(SecretRef(env="GLOBEX_KEY")) == (
        "env:GLOBEX_KEY is not among the secrets tenant globex may use"
        " ([tenants.globex] secrets; it lists none)")
