"""The admin route table: the app serves exactly the operations its OpenAPI document lists,
the checks that say so catch every kind of drift, and the document stays what it was when
the table replaced the hand-written list."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

import asyncpg
from aiohttp import web

from triggerd.api.admin import add_admin_routes, admin_middleware
from triggerd.api.admin_routes import (
    ADMIN_ROUTES,
    add_routes,
    documented_operations,
    openapi_document,
    route_mismatches,
    served_operations,
    table_problems,
)
from triggerd.api.openapi import (
    TRIGGER_NAME,
    WORKFLOW_KEY,
    Answer,
    Route,
    build_document,
)
from triggerd.config import ApiSettings, Settings
from triggerd.daemon import create_app

RECORDED = Path(__file__).parent / "data" / "openapi_paths.json"


async def _handler(request: web.Request) -> web.Response:
    return web.Response()


def _extra(method: str = "POST", path: str = "/api/v1/extra", **changes: Any) -> Route:
    route = Route(operation_id="extra", method=method, path=path, handler=_handler,
                  summary="Extra", tag="meta", answers={200: Answer(description="ok",
                                                                   schema={})})
    return dataclasses.replace(route, **changes)


def _app() -> web.Application:
    """The daemon's app as the tests build it: ``create_app`` adds the admin routes and the
    tests add them again to read the token without the process environment."""
    # Building the app runs no query: a stand-in pool is enough.
    app = create_app(Settings(api=ApiSettings(token="t")), cast(asyncpg.Pool, object()))
    add_admin_routes(app, environ={})
    return app


def test_the_daemon_app_serves_exactly_the_documented_admin_operations() -> None:
    app = _app()
    served = served_operations(app)
    assert route_mismatches(served, documented_operations(openapi_document())) == []
    # Each once, and no implicit HEAD beside a GET but the public document's.
    assert sorted(served) == sorted(label for r in ADMIN_ROUTES for label in r.labels)
    assert app.middlewares.count(admin_middleware) == 1


def test_health_metrics_and_webhook_routes_are_not_admin_operations() -> None:
    app = _app()
    app.router.add_route("*", "/hooks/{path:.*}", _handler)
    served = served_operations(app)
    assert not [op for op in served if not op.split(" ", 1)[1].startswith("/api/v1/")]
    assert "/healthz" not in openapi_document()["paths"]


def test_a_route_served_but_not_documented_is_reported() -> None:
    app = web.Application()
    add_routes(app.router, ADMIN_ROUTES)
    app.router.add_get("/api/v1/extra", _handler)  # add_get also serves HEAD
    problems = route_mismatches(served_operations(app),
                                documented_operations(build_document(ADMIN_ROUTES)))
    assert problems == [
        "served but not documented: GET /api/v1/extra",
        "served but not documented: HEAD /api/v1/extra",
    ]


def test_a_route_documented_but_not_served_is_reported() -> None:
    app = web.Application()
    add_routes(app.router, ADMIN_ROUTES)
    document = build_document((*ADMIN_ROUTES, _extra()))
    problems = route_mismatches(served_operations(app), documented_operations(document))
    assert problems == ["documented but not served: POST /api/v1/extra"]


def test_a_route_served_twice_is_reported() -> None:
    app = web.Application()
    add_routes(app.router, ADMIN_ROUTES)
    add_routes(app.router, ADMIN_ROUTES[1:2])
    problems = route_mismatches(served_operations(app),
                                documented_operations(build_document(ADMIN_ROUTES)))
    assert problems == ["served 2 times: GET /api/v1/workflows"]


def test_the_table_is_consistent() -> None:
    assert table_problems(ADMIN_ROUTES) == []


def test_table_problems_name_each_inconsistency() -> None:
    routes = (
        *ADMIN_ROUTES,
        _extra(operation_id="getWorkflow"),
        _extra(path="/api/v1/definitions"),
        _extra(operation_id="x1", path="/api/v1/x/{workflow}/{trigger}",
               parameters=(TRIGGER_NAME,)),
        _extra(operation_id="x2", path="/api/v1/y", parameters=(WORKFLOW_KEY,)),
        _extra(operation_id="x3", path="/api/v1/z", answers={404: Answer(description="no",
                                                                         schema={})}),
    )
    assert table_problems(routes) == [
        "operation id getWorkflow is declared 2 times",
        "POST /api/v1/definitions is declared 2 times",
        "POST /api/v1/x/{workflow}/{trigger}: the path has parameters ['workflow', 'trigger'],"
        " the route declares ['trigger']",
        "POST /api/v1/y: the path has parameters [], the route declares ['key']",
        "POST /api/v1/z: answers must be success statuses, and at least one",
    ]


def test_every_get_route_but_the_public_document_refuses_head() -> None:
    app = web.Application()
    add_routes(app.router, ADMIN_ROUTES)
    served = set(served_operations(app))
    assert {op for op in served if op.startswith("HEAD ")} == {"HEAD /api/v1/openapi.json"}


def test_a_public_get_documents_its_head() -> None:
    document = build_document(ADMIN_ROUTES)
    documented = documented_operations(document)
    assert [op for op in documented if op.startswith("HEAD ")] == ["HEAD /api/v1/openapi.json"]
    # A HEAD beside a GET that needs the token is served but not documented.
    app = web.Application()
    add_routes(app.router, ADMIN_ROUTES)
    app.router.add_route("HEAD", "/api/v1/workflows", _handler)
    assert route_mismatches(served_operations(app), documented) == [
        "served but not documented: HEAD /api/v1/workflows"]


def test_the_document_lists_the_recorded_operations() -> None:
    """The paths, parameters and shared responses as served before the route table took
    over from the hand-written list. A deliberate change of a route updates the recorded
    file in the same commit."""
    document = openapi_document()
    current = {"paths": document["paths"],
               "parameters": document["components"]["parameters"],
               "responses": document["components"]["responses"]}
    assert current == json.loads(RECORDED.read_text())


def test_only_the_document_itself_is_public() -> None:
    document = openapi_document()
    public = [f"{m.upper()} {p}" for p, item in document["paths"].items()
              for m, op in item.items() if op.get("security") == []]
    assert public == ["GET /api/v1/openapi.json"]
    assert [r.label for r in ADMIN_ROUTES if r.public] == public
