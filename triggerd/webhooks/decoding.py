"""Request bodies in a Content-Encoding, decoded here rather than by aiohttp.

aiohttp decodes as it reads, but takes the end of the bytes sent as the end of the body:
a gzip, br or zstd stream cut short (a proxy that dropped the connection's tail, a sender's
bug) became a shorter body, or an empty one, and was stored and run. Here a body is whole
only when the stream says it ended. The servers run with aiohttp's decoding off
(:func:`triggerd.serving.sockets.app_runner`), so every route that reads a body reads it
through :func:`read_body`.

Pure over bytes apart from :func:`read_body`: :class:`BodyDecoder` is fed the bytes as
they arrive, and refuses a body past ``limit`` decoded bytes as soon as it gets there
(1 KB of gzip can be gigabytes).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import hdrs, web

from triggerd.errors import TriggerdError

try:
    import brotli  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - a dependency
    brotli = None
try:
    from compression import zstd  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - before Python 3.14
    try:
        from backports import zstd  # type: ignore[no-redef, unused-ignore]
    except ImportError:  # pragma: no cover - a dependency
        zstd = None

# A body of many tiny members (gzip and zstd streams may be concatenated) costs a
# decompressor each: more than this is refused rather than decoded.
MAX_MEMBERS: Final = 100
# Decoded bytes produced per call, so a bomb stops at the limit instead of after it.
_STEP: Final = 64 * 1024


def encoded_limit(limit: int) -> int:
    """The most bytes a body in a Content-Encoding may take on the wire when it may decode
    to ``limit`` bytes. A body that does not compress grows when encoded (a gzip header and
    trailer, deflate's stored blocks; at worst 9 bits a byte with deflate's fixed codes, an
    eighth more): comparing its length with ``limit`` refused bodies whose decoded size was
    within it. A quarter and 1 KiB more is room for any of those, and still bounds what a
    sender may upload (empty deflate blocks decode to nothing)."""
    return limit + limit // 4 + 1024


def wire_limit(headers: Any, limit: int) -> int:
    """The most bytes of body to take on the wire for a decoded ``limit``: ``limit`` itself
    for a body in no Content-Encoding, :func:`encoded_limit` for one in an encoding."""
    return limit if content_encoding(headers) is None else encoded_limit(limit)


@dataclass(frozen=True)
class TooLarge:
    """A body :func:`read_body` stopped reading for its size, with what is known of it."""

    limit: int  # the most decoded bytes it was read for
    # Refused by its length on the wire (more than encoded_limit(limit) bytes in its
    # Content-Encoding), not by what it decoded to: it may decode to much less.
    on_the_wire: bool
    # The bytes counted when reading stopped (on the wire, or decoded): the body has at
    # least as many.
    counted: int

    @property
    def max_size(self) -> int:
        """The limit the body passed, in the bytes it was counted in."""
        return encoded_limit(self.limit) if self.on_the_wire else self.limit


class UndecodableBody(TriggerdError):
    """The body is not a whole stream in its Content-Encoding."""


class BodyTooLarge(TriggerdError):
    """The decoded body is larger than the limit."""


def encodings() -> tuple[str, ...]:
    """The Content-Encodings this server decodes (identity apart)."""
    found = ["gzip", "deflate"]
    if brotli is not None:
        found.append("br")
    if zstd is not None:
        found.append("zstd")
    return tuple(found)


def content_encoding_field(headers: Any) -> str | None:
    """The Content-Encoding field as sent, its repeated lines joined with ``", "`` (RFC 9110
    5.3: two lines are the list of both); ``None`` without one. Reading the first line
    only decoded a body sent with ``gzip`` twice once, and passed on what was left."""
    values = headers.getall(hdrs.CONTENT_ENCODING, ())
    if not values:
        return None
    # Empty list elements are ignored (RFC 9110 5.6.1): "gzip" and an empty line is gzip.
    return ", ".join(item.strip() for value in values for item in value.split(",")
                     if item.strip())


def content_encoding(headers: Any) -> str | None:
    """The body's Content-Encoding in lower case; ``None`` for none or ``identity``."""
    value = content_encoding_field(headers)
    if value is None:
        return None
    value = value.strip().lower()
    return None if value in ("", "identity") else value


class BodyDecoder:
    """Decodes one body in ``encoding`` (one of :func:`encodings`), fed as it arrives:
    :meth:`feed` each piece, then :meth:`finish`."""

    def __init__(self, encoding: str, limit: int) -> None:
        if encoding not in encodings():
            raise UndecodableBody(f"the Content-Encoding {encoding!r} is not decoded here")
        self.encoding = encoding
        self.limit = limit
        self.size = 0
        self._members = 0
        self._member: Any = None  # the current member's decompressor
        self._brotli: Any = brotli.Decompressor() if encoding == "br" else None
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes of ``data``; raises :class:`UndecodableBody` or
        :class:`BodyTooLarge` (as soon as the decoded size passes the limit)."""
        if not data:
            return b""
        self._fed = True
        try:
            if self._brotli is not None:
                return self._feed_brotli(data)
            return self._feed_members(data)
        except (BodyTooLarge, UndecodableBody):
            raise
        except Exception as exc:  # zlib.error, brotli.error, zstd.ZstdError
            raise UndecodableBody(f"{type(exc).__name__}: {exc}") from exc

    def finish(self) -> None:
        """The body ended: raises :class:`UndecodableBody` unless its stream did too. No
        bytes at all is an empty body, whatever the header says (as aiohttp took it: a GET
        sent with a client's default Content-Encoding)."""
        if not self._fed:
            return
        if self._brotli is not None:
            finished = self._brotli.is_finished()
        else:
            finished = self._member is not None and self._member.eof
        if not finished:
            raise UndecodableBody(f"the {self.encoding} stream is cut short")

    def _counted(self, out: bytes) -> bytes:
        self.size += len(out)
        if self.size > self.limit:
            raise BodyTooLarge(f"more than {self.limit} bytes decoded")
        return out

    def _feed_brotli(self, data: bytes) -> bytes:
        if self._brotli.is_finished():
            raise UndecodableBody("bytes after the end of the br stream")
        out = [self._counted(self._brotli.process(data, output_buffer_limit=_STEP))]
        # Output held back by the limit comes with empty input (brotli's rule).
        while not self._brotli.is_finished():
            part = self._brotli.process(b"", output_buffer_limit=_STEP)
            if not part:
                break
            out.append(self._counted(part))
        return b"".join(out)

    def _next_member(self, data: bytes) -> Any:
        if self._member is not None and self.encoding == "deflate":
            raise UndecodableBody("bytes after the end of the deflate stream")
        self._members += 1
        if self._members > MAX_MEMBERS:
            raise UndecodableBody(f"more than {MAX_MEMBERS} {self.encoding} members")
        if self.encoding == "zstd":
            return zstd.ZstdDecompressor()
        if self.encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # RFC 9110's deflate is a zlib stream, but some senders send raw deflate: as
        # aiohttp does, tell them apart by the first byte's compression method.
        return zlib.decompressobj(zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS)

    def _feed_members(self, data: bytes) -> bytes:
        """Members one after another (gzip and zstd streams may be concatenated), each
        decompressor's output taken in steps of at most _STEP bytes."""
        zstd_kind = self.encoding == "zstd"
        out: list[bytes] = []
        while True:
            if self._member is None or self._member.eof:
                if not data:
                    break
                self._member = self._next_member(data)
            member = self._member
            before = len(data)
            part = member.decompress(data, _STEP)
            if member.eof:
                data = bytes(member.unused_data)
            elif zstd_kind:
                data = b""  # zstd keeps the input it has not decoded yet
            else:
                data = bytes(member.unconsumed_tail)
            if part:
                out.append(self._counted(part))
                continue  # more output may be waiting, whether or not input is left
            if member.eof:
                continue
            if zstd_kind and not member.needs_input:
                continue
            if not data or len(data) == before:
                break  # all taken (or, defensively, no progress): wait for more bytes
        return b"".join(out)


_DECODED = web.RequestKey("triggerd_decoded_body", bytes)


async def request_bytes(request: web.Request, limit: int) -> bytes:
    """The whole body decoded, read once per request (later calls get the same bytes), for
    the routes that read it whole; past ``limit`` :class:`aiohttp.web.HTTPRequestEntityTooLarge`
    (the 413 ``request.read()`` raised)."""
    if _DECODED in request:
        return request[_DECODED]
    body = await read_body(request, limit)
    if isinstance(body, TooLarge):
        if body.on_the_wire:
            # Its decoded size is not known (it may be small): aiohttp's own text would
            # say the decoded limit was exceeded.
            raise web.HTTPRequestEntityTooLarge(
                max_size=body.max_size, actual_size=_known_size(request, body),
                text=f"the encoded body takes more than {body.max_size} bytes on the wire,"
                f" the most for a limit of {limit} decoded bytes")
        raise web.HTTPRequestEntityTooLarge(max_size=limit,
                                            actual_size=_known_size(request, body))
    request[_DECODED] = body
    return body


def _known_size(request: web.Request, refused: TooLarge) -> int:
    """The size of a refused body in the bytes its limit counts, as far as it is known: the
    Content-Length when those are the bytes on the wire, else the bytes counted when
    reading stopped (the body has at least those). An encoded body that decoded past the
    limit may decode to anything larger: its Content-Length says nothing of that. (aiohttp
    3.14 leaves ``actual_size`` out of its text: kept true for whoever reads it.)"""
    length = request.content_length
    if length is not None and (refused.on_the_wire
                               or content_encoding(request.headers) is None):
        return length
    return refused.counted


async def read_body(request: web.Request, limit: int) -> bytes | TooLarge:
    """The request's body decoded (Content-Encoding), or :class:`TooLarge` as soon as more
    than ``limit`` decoded bytes arrived, or more than :func:`encoded_limit` encoded ones
    (the rest is never read). Raises
    :class:`UndecodableBody` for a body that is not a whole stream in its encoding, and
    aiohttp's errors for a body not received completely."""
    encoding = content_encoding(request.headers)
    content = request.content
    if encoding is None:
        if content.is_eof():
            # Everything has arrived already (a small body comes with the headers).
            body = content.read_nowait()
            return body if len(body) <= limit else TooLarge(limit, False, len(body))
        length = request.content_length
        if length is not None and length <= limit:
            # The HTTP parser never delivers more than Content-Length bytes.
            return await content.read()
        buffer = bytearray()
        while chunk := await content.readany():
            buffer += chunk
            if len(buffer) > limit:
                return TooLarge(limit, False, len(buffer))
        return bytes(buffer)
    decoder = BodyDecoder(encoding, limit)
    parts: list[bytes] = []
    wire = 0
    most = encoded_limit(limit)
    try:
        while chunk := await content.readany():
            wire += len(chunk)
            if wire > most:
                return TooLarge(limit, True, wire)
            parts.append(decoder.feed(chunk))
    except BodyTooLarge:
        return TooLarge(limit, False, decoder.size)
    decoder.finish()
    return b"".join(parts)
