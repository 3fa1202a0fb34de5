"""Webhook auth secrets from ``{file: PATH}`` follow ``[daemon] secret_roots`` (issue 12
item 8): a file outside the roots is not read, the webhook answers a retryable 503, and a
reload that adds the root makes it verify requests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import asyncpg

from tests.integration.test_webhooks import (  # noqa: F401 (make_client is a fixture)
    TOKEN,
    ClientFactory,
    apply,
    bearer,
    hook,
    make_client,
    workflow,
)
from triggerd.config import DaemonSettings, Settings
from triggerd.model import AuthConfig, SecretRef


async def test_a_webhook_secret_file_outside_the_roots_is_not_read(
    make_client: ClientFactory, pool: asyncpg.Pool, tmp_path: Path,  # noqa: F811
) -> None:
    secret = tmp_path / "hooks" / "token"
    secret.parent.mkdir()
    secret.write_text(TOKEN + "\n")
    auth = AuthConfig(scheme="token", secret=SecretRef(file=str(secret)))
    await apply(pool, workflow("w", hook("h", "filed", auth=auth)))
    elsewhere = Settings(daemon=DaemonSettings(secret_roots=(str(tmp_path / "other"),)))
    client, ingress = await make_client(elsewhere)
    response = await client.post("/hooks/filed", json={}, headers=bearer())
    assert response.status == 503
    assert await response.json() == {
        "error": "unavailable",
        "message": "this webhook cannot verify requests right now; retry later",
    }
    allowed = dataclasses.replace(
        elsewhere, daemon=DaemonSettings(secret_roots=(str(secret.parent),)))
    ingress.apply_settings(allowed)
    await ingress.reload()
    assert (await client.post("/hooks/filed", json={}, headers=bearer())).status == 202
    assert (await client.post("/hooks/filed", json={},
                              headers=bearer("wrong"))).status == 401
