"""A handler's unexpected exception, on every route: one ``http_internal_error`` log line
with the traceback, and a ``500`` in the project's JSON error envelope (``{"error":
"internal", "message": ...}``) that never quotes the exception.

aiohttp's own answer was a plain-text ``500 Internal Server Error`` and an unstructured
``Error handling request`` record. The admin API (its middleware), the webhooks' store
path (the ingress) and the console (its error pages) answer their own crashes; this
middleware, first in every application after the drain, answers the rest: ``/healthz``,
``/readyz``, ``/metrics``, ``/hooks/_executions/...``, a webhook address that is none,
and a crash in another middleware. What runs before the middlewares (an ``Expect``
handler) is answered the same way by the connection handler
(:mod:`triggerd.serving.protocol_errors`), through :func:`crash_response`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_request import BaseRequest

from triggerd.webhooks.answers import error_response

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INTERNAL_CODE = "internal"
INTERNAL_MESSAGE = "internal error; the daemon log has the details"
# The console's own error pages answer its crashes; should those fail too, a page that
# needs no template (the console's layout is what failed, perhaps).
_CONSOLE_PREFIX = "/ui"
_CONSOLE_PAGE = (
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<title>500 Internal Server Error</title></head><body><h1>500 Internal Server Error</h1>"
    "<p>something went wrong on the server; its log has the details</p></body></html>\n"
)


# As the console's own pages (triggerd.console.sessions.security_headers; not imported:
# the webhook workers load no console).
_CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _in_console(path: str) -> bool:
    return path == _CONSOLE_PREFIX or path.startswith(_CONSOLE_PREFIX + "/")


def log_crash(request: BaseRequest, exc: BaseException) -> None:
    """The one log line of a request that crashed (no query string: it can hold a token)."""
    logger.error(
        "HTTP request failed: %s", type(exc).__name__,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"event": "http_internal_error", "method": request.method,
               "path": request.path[:300]},
    )


def crash_response(request: BaseRequest) -> web.Response:
    """The answer to a request whose handling raised unexpectedly."""
    if _in_console(request.path):
        page = web.Response(status=500, text=_CONSOLE_PAGE, content_type="text/html")
        page.headers.update(_CONSOLE_HEADERS)
        return page
    return error_response(500, INTERNAL_CODE, INTERNAL_MESSAGE)


@web.middleware
async def internal_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An unexpected exception below this middleware, logged once and answered ``500``."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise  # a deliberate answer (the router's 404/405 among them)
    except ConnectionError:
        raise  # the client went away: nobody to answer
    except TimeoutError:
        raise  # aiohttp's 504, as before: a wait that ran out, not a crash
    except Exception as exc:
        log_crash(request, exc)
        if request.writer is not None and request.writer.output_size > 0:
            # Part of an answer is on the wire (a stream): a second one would land
            # inside it. As aiohttp: the connection is closed instead.
            raise ConnectionError("the answer was under way when its handler failed"
                                  ) from exc
        return crash_response(request)
