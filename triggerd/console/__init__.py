"""The operations console at ``/ui/``: server-rendered pages served by the daemon itself.

No build step and no CDN: the templates, the stylesheet, a small script and htmx (vendored
from its npm package, 0BSD) ship in the package and work offline. Access is by session
(:mod:`.sessions`); pages read through the store and act through :mod:`triggerd.operations`.
"""

from __future__ import annotations

from aiohttp import web

from triggerd.appkeys import SETTINGS
from triggerd.console import pages
from triggerd.console.error_pages import error_pages
from triggerd.console.sessions import (
    CROSS_SITE_LOG,
    CSRF_LOG,
    LOGIN_ATTEMPTS,
    PREFIX,
    TRUSTED_PROXIES,
    LoginAttempts,
    TrustedProxies,
    console_middleware,
    cross_site_log,
)


def add_console_routes(app: web.Application) -> None:
    # In this order: the error pages see the sessions' refusals (the outer one runs first).
    app.middlewares.append(error_pages)
    app.middlewares.append(console_middleware)
    app[TRUSTED_PROXIES] = TrustedProxies(app[SETTINGS].current)
    if LOGIN_ATTEMPTS not in app:  # a test may have set one with its own clock
        app[LOGIN_ATTEMPTS] = LoginAttempts()
    if CROSS_SITE_LOG not in app:
        app[CROSS_SITE_LOG] = cross_site_log()
    if CSRF_LOG not in app:
        app[CSRF_LOG] = cross_site_log(event="console_csrf_refused")
    router = app.router
    router.add_get(PREFIX, pages.redirect_home)
    router.add_get(f"{PREFIX}/", pages.overview)
    router.add_get(f"{PREFIX}/login", pages.login_page)
    router.add_post(f"{PREFIX}/login", pages.login)
    router.add_post(f"{PREFIX}/logout", pages.logout)
    router.add_get(f"{PREFIX}/triggers", pages.triggers_page)
    router.add_get(f"{PREFIX}/triggers/{{workflow}}/{{trigger}}", pages.trigger_page)
    router.add_post(f"{PREFIX}/triggers/{{workflow}}/{{trigger}}/fire", pages.fire_action)
    router.add_post(f"{PREFIX}/triggers/{{workflow}}/{{trigger}}/pause", pages.pause_action)
    router.add_post(f"{PREFIX}/triggers/{{workflow}}/{{trigger}}/resume", pages.resume_action)
    router.add_post(f"{PREFIX}/triggers/{{workflow}}/{{trigger}}/skip", pages.skip_action)
    router.add_post(f"{PREFIX}/triggers/{{workflow}}/{{trigger}}/backfill",
                    pages.backfill_action)
    router.add_get(f"{PREFIX}/backfills/{{id}}", pages.backfill_page)
    router.add_post(f"{PREFIX}/backfills/{{id}}/cancel", pages.cancel_backfill_action)
    router.add_get(f"{PREFIX}/audit", pages.audit_page)
    router.add_get(f"{PREFIX}/executions", pages.executions_page)
    router.add_get(f"{PREFIX}/executions/{{id}}", pages.execution_page)
    router.add_get(f"{PREFIX}/workflows", pages.workflows_page)
    router.add_get(f"{PREFIX}/workflows/{{key}}", pages.workflow_page)
    router.add_post(f"{PREFIX}/workflows/{{key}}/archive", pages.archive_action)
    router.add_post(f"{PREFIX}/workflows/{{key}}/activate", pages.activate_action)
    router.add_get(f"{PREFIX}/webhooks", pages.webhooks_page)
    router.add_get(f"{PREFIX}/webhooks/{{id}}", pages.webhook_page)
    router.add_post(f"{PREFIX}/webhooks/{{id}}/replay", pages.replay_action)
    router.add_get(f"{PREFIX}/static/{{name}}", pages.static)
    router.add_get("/favicon.ico", pages.favicon)


__all__ = ["TRUSTED_PROXIES", "add_console_routes"]
