"""Requests aiohttp cannot parse (an over-long request or header line, too many headers,
not HTTP at all) are answered in the project's JSON error envelope, on every route.

aiohttp answers them itself, before any application, middleware or route sees the request,
with a plain-text 400 whose text quotes the first 100 bytes of the offending line: a header
line can hold a secret. Its ``RequestHandler.handle_error`` builds that answer, so the
runner's server makes connections with a handler whose ``handle_error`` answers JSON that
names only what was wrong. The log line stays the one ``triggerd.logs.ProtocolErrorFilter``
writes (a reason code, never the value).

The status stays 400: aiohttp's ``LineTooLong`` does not say whether the line was the
request line (414) or a header line (431), and both limits are 8,190 bytes, so 431 would be
wrong for an over-long URL; 400 is right for each (RFC 9110 15.5.1).

A crash aiohttp itself catches (in an ``Expect`` handler, which runs before the
middlewares) is answered as :mod:`triggerd.serving.internal_errors` answers the others.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from triggerd.logs import protocol_error_reason
from triggerd.serving.internal_errors import crash_response, log_crash
from triggerd.webhooks.answers import error_response

_MESSAGES = {
    "too_many_headers": "the request has more header lines than the server accepts",
    "invalid_header": "the request has a header line that is not valid HTTP",
    "invalid_url": "the request's target is not a valid URL",
    "bad_body_framing": "the request's body framing (Content-Length, chunks) is not valid",
}


def protocol_error_message(exc: HttpProcessingError) -> tuple[str, str]:
    """The error code and message for an unparsable request. Neither quotes what the
    client sent (the exception's own message does)."""
    reason = protocol_error_reason(exc)
    if isinstance(exc, LineTooLong):
        # args are (the line's first bytes, the limit, ...): only the limit is ours.
        limit = exc.args[1] if len(exc.args) > 1 else None
        bound = f" ({limit} bytes)" if isinstance(limit, int) else ""
        return reason, f"the request line or a header line is longer than the server accepts{bound}"
    return reason, _MESSAGES.get(reason, "the request is not valid HTTP")


def protocol_error_response(exc: HttpProcessingError) -> web.Response:
    code, message = protocol_error_message(exc)
    answer = error_response(400, code, message)
    # aiohttp closes the connection after a parse error: the stream is out of step.
    answer.force_close()
    return answer


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, with parse errors answered in JSON."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if (status == 500 and exc is not None
                and not isinstance(exc, (HttpProcessingError, ConnectionError))):
            # A crash before the middlewares (an Expect handler) or in one above
            # internal_errors: the answer and the one log line internal_errors gives.
            log_crash(request, exc)
            if request.writer.output_size > 0:  # as aiohttp: the answer is under way
                raise ConnectionError("Response is sent already, cannot send another"
                                      " response with the error message")
            answer = crash_response(request)
            answer.force_close()  # as aiohttp's own
            return answer
        # aiohttp's own first: it logs (through the protocol error filter) and refuses when
        # part of a response was sent already.
        plain = super().handle_error(request, status, exc, message)
        if isinstance(exc, HttpProcessingError) and status == 400:
            return protocol_error_response(exc)
        return plain


class JsonErrorServer(web.Server):
    """aiohttp's low-level server making :class:`JsonErrorRequestHandler` connections (as
    ``Server.__call__`` makes its own, with the same arguments)."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorAppRunner(web.AppRunner):
    """``web.AppRunner`` whose server is a :class:`JsonErrorServer`: the application's own
    server (made after its startup), rebuilt with the same handler, factory and options."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return JsonErrorServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **made._kwargs,
        )
