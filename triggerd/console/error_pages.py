"""The console's refusals and errors as pages in its layout (they were bare text): the
status, its reason and the message, with the way back; the status code stays. A form sent
after its session ended is answered with the login page, which leads back to the form's."""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import hdrs, web

from triggerd.console.pages import render, session_ended
from triggerd.console.sessions import Handler, in_console, security_headers

logger = logging.getLogger(__name__)

UNEXPECTED = "something went wrong on the server; its log has the details"
# Headers of the refusal that the page does not carry over (it has its own body, and its
# own policy: a second one would be enforced too, and refuse the page's scripts).
_BODY_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING,
                           hdrs.CONTENT_SECURITY_POLICY})


def reason_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def router_message(request: web.Request, status: int) -> str | None:
    """The words for what the router refused (its own are "404: Not Found"), or None for a
    handler's refusal, which says its own."""
    if request.match_info.http_exception is None:
        return None
    if status == 404:
        return f"there is no console page {request.path}"
    if status == 405:
        allowed = request.match_info.http_exception.headers.get(hdrs.ALLOW, "")
        return f"{request.method} is not allowed here (only {allowed or 'nothing'})"
    return None


def error_page(request: web.Request, refusal: web.Response) -> web.Response:
    """``refusal`` (a plain-text answer of 400 or more) as a page."""
    status = refusal.status
    if status == 401:
        page = session_ended(request)
    else:
        message = router_message(request, status) or refusal.text or reason_of(status)
        page = render(request, "error.html", status=status, code=status,
                      reason=reason_of(status), message=message)
    for name, value in refusal.headers.items():
        if name not in _BODY_HEADERS:
            page.headers.add(name, value)
    if refusal.keep_alive is False:
        page.force_close()  # a refusal sent before its body was read (close_unread)
    security_headers(page)
    return page


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every plain-text refusal under ``/ui/`` and every error raised there, as a page."""
    if not in_console(request.path):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type != "text/plain":
            raise
        return error_page(request, exc)
    except ConnectionError:
        raise  # the browser went away: nobody to show a page to
    except Exception:
        logger.exception("console: the request failed", extra={
            "event": "console_request_failed", "path": request.path})
        return error_page(request, web.Response(status=500, text=UNEXPECTED))
    if (response.status >= 400 and isinstance(response, web.Response)
            and response.content_type == "text/plain"):
        return error_page(request, response)
    return response
