"""The fingerprint of the files an apply reads: everything its outcome depends on."""

from __future__ import annotations

from triggerd.definitions.fingerprint import code_fingerprint, files_fingerprint

TYPES = frozenset({"noop", "http"})


def _print(
    contents: list[bytes], *, prune: bool = False, code: str = "c", types: frozenset[str] = TYPES
) -> str:
    return files_fingerprint(contents, prune=prune, code=code, node_types=types)


def test_same_inputs_same_fingerprint() -> None:
    assert _print([b"a", b"b"]) == _print([b"a", b"b"])


def test_every_input_changes_it() -> None:
    base = _print([b"a", b"b"])
    others = [
        _print([b"b", b"a"]),  # file order
        _print([b"ab"]),  # where one file ends and the next begins
        _print([b"a", b"b", b""]),
        _print([b"a", b"c"]),
        _print([b"a", b"b"], prune=True),
        _print([b"a", b"b"], code="d"),
        _print([b"a", b"b"], types=TYPES | {"wait"}),
    ]
    assert len({base, *others}) == len(others) + 1


def test_code_fingerprint_covers_the_package_sources() -> None:
    first = code_fingerprint()
    assert first == code_fingerprint()
    assert len(first) == 64
