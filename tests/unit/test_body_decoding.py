"""Bodies in a Content-Encoding: decoded whole, refused when cut short, limited decoded."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import pytest

from triggerd.webhooks.decoding import BodyDecoder, BodyTooLarge, UndecodableBody, encodings

try:
    from compression import zstd  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    from backports import zstd  # type: ignore[no-redef, unused-ignore]
import brotli  # type: ignore[import-untyped]

TEXT = b"".join(b"line %d of a body that compresses well\n" % i for i in range(5000))


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "raw-deflate": _raw_deflate,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


def _decode(encoding: str, data: bytes, piece: int, limit: int = 10**9) -> bytes:
    decoder = BodyDecoder("deflate" if encoding == "raw-deflate" else encoding, limit)
    out = b"".join(decoder.feed(data[i:i + piece]) for i in range(0, len(data), piece))
    decoder.finish()
    return out


def test_the_encodings_served() -> None:
    assert encodings() == ("gzip", "deflate", "br", "zstd")


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize("piece", [1, 7, 4096, 10**9])
def test_a_whole_stream_decodes_however_it_arrives(encoding: str, piece: int) -> None:
    data = ENCODERS[encoding](TEXT)
    if piece == 1 and len(data) > 3000:
        data = ENCODERS[encoding](TEXT[:20000])
        assert _decode(encoding, data, piece) == TEXT[:20000]
        return
    assert _decode(encoding, data, piece) == TEXT


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize("cut", [0.0, 0.33, 0.5, 0.99])
def test_a_stream_cut_short_is_refused(encoding: str, cut: float) -> None:
    data = ENCODERS[encoding](TEXT)
    short = data[: max(1, int(len(data) * cut))] if cut else data[:-1]
    with pytest.raises(UndecodableBody, match=r"cut short|Error|error"):
        _decode(encoding, short, 4096)


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_concatenated_members_decode_and_too_many_are_refused(encoding: str) -> None:
    compress = ENCODERS[encoding]
    assert _decode(encoding, compress(b"one ") + compress(b"two"), 3) == b"one two"
    with pytest.raises(UndecodableBody, match="more than 100"):
        _decode(encoding, compress(b"x") * 101, 10**6)
    # A member cut short after a whole one is still cut short.
    with pytest.raises(UndecodableBody):
        _decode(encoding, compress(b"one ") + compress(b"two")[:-2], 10**6)


@pytest.mark.parametrize("encoding", ["deflate", "br"])
def test_bytes_after_the_end_of_a_single_stream_are_refused(encoding: str) -> None:
    # brotli's decoder refuses them itself ("decoder failed"), in the same piece.
    with pytest.raises(UndecodableBody, match=r"after the end|decoder failed"):
        _decode(encoding, ENCODERS[encoding](b"body") + ENCODERS[encoding](b"more"), 10**6)
    with pytest.raises(UndecodableBody, match=r"after the end|decoder failed"):
        _decode(encoding, ENCODERS[encoding](b"body") + ENCODERS[encoding](b"more"), 1)


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_a_bomb_stops_at_the_limit_not_after_it(encoding: str) -> None:
    bomb = ENCODERS[encoding](b"x" * 50_000_000)
    decoder = BodyDecoder("deflate" if encoding == "raw-deflate" else encoding, 1_000_000)
    with pytest.raises(BodyTooLarge):
        decoder.feed(bomb)
    # Output comes in steps of 64 KiB (brotli's may reach about 100 KiB).
    assert decoder.size <= 1_000_000 + 2 * 64 * 1024
    # At the limit exactly is allowed.
    exact = ENCODERS[encoding](b"y" * 1000)
    assert _decode(encoding, exact, 10**6, limit=1000) == b"y" * 1000
    with pytest.raises(BodyTooLarge):
        _decode(encoding, exact, 10**6, limit=999)


@pytest.mark.parametrize("garbage", [b"not compressed at all", b"\x1f\x8b\x08garbage"])
def test_garbage_is_undecodable_in_every_encoding(garbage: bytes) -> None:
    for encoding in encodings():
        with pytest.raises(UndecodableBody):
            _decode(encoding, garbage, 10**6)


def test_an_encoding_not_served_is_refused() -> None:
    with pytest.raises(UndecodableBody, match="not decoded here"):
        BodyDecoder("compress", 10)


def test_no_bytes_at_all_is_an_empty_body_in_any_encoding() -> None:
    for encoding in encodings():
        decoder = BodyDecoder(encoding, 10)
        assert decoder.feed(b"") == b""
        decoder.finish()  # no error
