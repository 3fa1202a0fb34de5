"""The operations console at ``/ui/``: server-rendered pages served by the daemon itself.

No build step and no CDN: the templates, the stylesheet, a small script and htmx (vendored
from its npm package, 0BSD) ship in the package and work offline. Access is by session
(:mod:`.sessions`); pages read through the store and act through :mod:`triggerd.operations`.
"""

from __future__ import annotations

from aiohttp import web

from triggerd.console import views
from triggerd.console.sessions import PREFIX, console_middleware


def add_console_routes(app: web.Application) -> None:
    app.middlewares.append(console_middleware)
    router = app.router
    router.add_get(PREFIX, views.redirect_home)
    router.add_get(f"{PREFIX}/", views.overview)
    router.add_get(f"{PREFIX}/login", views.login_page)
    router.add_post(f"{PREFIX}/login", views.login)
    router.add_post(f"{PREFIX}/logout", views.logout)
    router.add_get(f"{PREFIX}/triggers", views.triggers_page)
    router.add_get(f"{PREFIX}/triggers/{{workflow}}/{{trigger}}", views.trigger_page)
    router.add_post(f"{PREFIX}/triggers/{{workflow}}/{{trigger}}/fire", views.fire_action)
    router.add_get(f"{PREFIX}/executions", views.executions_page)
    router.add_get(f"{PREFIX}/executions/{{id}}", views.execution_page)
    router.add_get(f"{PREFIX}/workflows", views.workflows_page)
    router.add_get(f"{PREFIX}/workflows/{{key}}", views.workflow_page)
    router.add_get(f"{PREFIX}/static/{{name}}", views.static)


__all__ = ["add_console_routes"]
