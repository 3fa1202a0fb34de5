from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from triggerd.redaction import RedactingFilter, Redactor


def test_redacts_values_embedded_in_strings_keys_and_nested_values() -> None:
    redactor = Redactor(["s3cr3t", "tok"])
    value = {
        "headers": {"Authorization": "Bearer s3cr3t"},
        "s3cr3t-key": ["tok", "x-tok-y", 5, None, True, {"deep": "s3cr3ts3cr3t"}],
        "n": 1.5,
    }
    assert redactor.redact(value) == {
        "headers": {"Authorization": "Bearer ***"},
        "***-key": ["***", "x-***-y", 5, None, True, {"deep": "******"}],
        "n": 1.5,
    }
    assert value["headers"] == {"Authorization": "Bearer s3cr3t"}  # not modified


def test_longest_secret_wins_when_one_contains_another() -> None:
    assert Redactor(["abc", "abcdef"]).redact_text("xabcdefx abc") == "x***x ***"


def test_empty_secrets_are_ignored_and_no_secrets_change_nothing() -> None:
    assert Redactor(["", "k"]).redact_text("kite") == "***ite"
    empty = Redactor([""])
    assert not empty
    value = {"a": ["b"]}
    assert empty.redact(value) is value
    assert empty.redact_text("anything") == "anything"


def test_regex_characters_in_secrets_are_literal() -> None:
    assert Redactor(["a.b*c"]).redact_text("a.b*c axbbc") == "*** axbbc"


def test_encoded_forms_are_redacted_too() -> None:
    redactor = Redactor(['p@ss w/"q"'])
    assert redactor.redact_text("https://x/?token=p%40ss%20w%2F%22q%22") == "https://x/?token=***"
    assert redactor.redact_text("token=p%40ss+w%2F%22q%22") == "token=***"
    assert redactor.redact_text(json.dumps({"t": 'p@ss w/"q"'})) == '{"t": "***"}'


@pytest.mark.parametrize("secret", ["kéy=abc123", "Tr0ub4dor/&3 x", 'pa ss/wörd:1@x"q'])
def test_a_secret_in_a_url_path_is_redacted_as_the_url_writes_it(secret: str) -> None:
    # An http node's error message names its URL as yarl writes it: some characters of the
    # secret encoded, the path's own left alone (neither of the other encodings).
    from yarl import URL

    url = str(URL(f"http://127.0.0.1:1/status/{secret}"))
    assert Redactor([secret]).redact_text(f"GET {url}: answered status 404") == (
        "GET http://127.0.0.1:1/status/***: answered status 404")


@pytest.mark.parametrize("secret", ["s3cr3t wörd/+x=y", "a b!$'()*,;~?&c", "pa ss#frag"])
def test_a_secret_in_a_url_query_is_redacted_as_the_url_writes_it(secret: str) -> None:
    # An http node's `query` value, and a value templated into its URL's query string, as
    # a service echoing its URL sends them back (space as "+", "/" left alone): neither
    # form is one of the other encodings.
    from yarl import URL

    given = URL("http://127.0.0.1:1/echo").with_query({"k": secret, "n": "1"})
    written = URL(f"http://127.0.0.1:1/echo?k={secret.split('#')[0]}")
    redactor = Redactor([secret])
    assert redactor.redact_text(str(given)) == "http://127.0.0.1:1/echo?k=***&n=1"
    if "#" not in secret:
        assert redactor.redact_text(str(written)) == "http://127.0.0.1:1/echo?k=***"


def test_patterns_mask_what_they_match_and_are_kept_by_with_secrets() -> None:
    redactor = Redactor(["one"]).with_patterns([r"(?<=/k/)[a-z]+"]).with_secrets(["two"])
    assert redactor.redact_text("one two /k/abc") == "*** *** /k/***"


def test_repr_never_shows_secret_values() -> None:
    redactor = Redactor(["s3cr3t", "tok"])
    assert repr(redactor) == "Redactor(<2 secrets>)"
    assert "s3cr3t" not in str(redactor)


def test_with_secrets_adds_to_the_existing_ones() -> None:
    redactor = Redactor(["one"]).with_secrets(["two"])
    assert redactor.secrets == frozenset({"one", "two"})
    assert redactor.redact_text("one two three") == "*** *** three"


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, RedactingFilter, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s|%(token)s"))
    log_filter = RedactingFilter(Redactor(["s3cr3t"]))
    handler.addFilter(log_filter)
    logger = logging.getLogger("tests.redaction")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, log_filter, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_filter_redacts_message_args_and_extra_fields(
    capture: tuple[logging.Logger, RedactingFilter, io.StringIO],
) -> None:
    logger, _, stream = capture
    logger.info("calling with %s and %d", "Bearer s3cr3t", 3, extra={"token": "s3cr3t!"})
    logger.info("plain %s", "text", extra={"token": {"k": ["s3cr3t"]}})
    assert stream.getvalue().splitlines() == [
        "INFO calling with Bearer *** and 3|***!",
        "INFO plain text|{'k': ['***']}",
    ]


def test_filter_redacts_exception_text(
    capture: tuple[logging.Logger, RedactingFilter, io.StringIO],
) -> None:
    logger, _, stream = capture
    try:
        raise ValueError("bad token s3cr3t")
    except ValueError:
        logger.exception("failed", extra={"token": "-"})
    text = stream.getvalue()
    assert "ValueError: bad token ***" in text
    assert "s3cr3t" not in text


def test_filter_learns_new_secrets(
    capture: tuple[logging.Logger, RedactingFilter, io.StringIO],
) -> None:
    logger, log_filter, stream = capture
    log_filter.add_secrets(["later"])
    logger.warning("later and s3cr3t", extra={"token": "-"})
    log_filter.set_redactor(Redactor())
    logger.warning("later and s3cr3t", extra={"token": "-"})
    assert stream.getvalue().splitlines() == [
        "WARNING *** and ***|-",
        "WARNING later and s3cr3t|-",
    ]


def test_the_log_filter_learns_no_secret_too_short_to_mask_sensibly(
    capture: tuple[logging.Logger, RedactingFilter, io.StringIO],
) -> None:
    """A one-character secret ("x") masked every x of every log line, event names too."""
    logger, log_filter, stream = capture
    log_filter.set_redactor(Redactor())
    log_filter.add_secrets(["x", "abc", "abcd"])
    logger.warning("execution_finished abc abcd", extra={"token": "-"})
    assert stream.getvalue().splitlines() == ["WARNING execution_finished abc ***|-"]


def test_filter_survives_bad_format_arguments() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "s3cr3t %d", ("not a number",), None)
    assert RedactingFilter(Redactor(["s3cr3t"])).filter(record) is True
    assert record.msg == "*** %d"


def test_values_derived_from_secrets() -> None:
    from triggerd.redaction import derived_secrets

    redactor = Redactor(["tok-123456"])
    pairs = [
        ("Bearer {{ secrets.T }}", "Bearer tok-123456"),  # embedded: masked in place
        # The secret's upper and lower case are its own forms: masked in place.
        ("{{ secrets.T | upper }}", "TOK-123456"),
        ("{{ secrets.T[:4] }}", "tok-"),
        ("{{ secrets.T[:3] }}", "tok"),  # too short to mask everywhere
        ("{{ input.u }}:{{ secrets.T }}", "alice:tok-123456"),  # mixed with other values
        ("x {{ secrets.T }} {{ secrets.T | upper }}", "x tok-123456 TOK-123456"),
        ("{{ secrets.T }}", "tok-123456"),  # the secret itself: already masked
    ]
    assert derived_secrets(pairs, redactor) == {"tok-", "alice:tok-123456"}
    assert redactor.redact_text("x tok-123456 TOK-123456 Tok-123456") == "x *** *** Tok-123456"


def test_a_secret_made_a_number_is_masked_and_so_are_numbers_derived_from_it() -> None:
    # `secrets.PIN | int` was stored as the number itself: only strings were masked.
    from triggerd.expressions import secret_renderings
    from triggerd.redaction import derived_secrets

    redactor = Redactor(["98765432"])
    assert redactor.redact({"pin": 98765432, "other": [98765433, 5, True, 1.5]}) == {
        "pin": "***", "other": [98765433, 5, True, 1.5]}
    template = {"next": "{{ secrets.PIN | int + 1 }}", "f": "{{ secrets.PIN | float }}",
                "plain": "{{ input.n }}"}
    rendered = {"next": 98765433, "f": 98765432.0, "plain": 12345678}
    derived = derived_secrets(secret_renderings(template, rendered), redactor)
    assert derived == {"98765433", "98765432.0"}
    assert redactor.with_secrets(derived).redact(rendered) == {
        "next": "***", "f": "***", "plain": 12345678}
    # An int longer than Python writes is no secret's digits (and no error).
    assert redactor.redact([10**5000]) == [10**5000]


def test_secret_renderings_pairs_templates_that_read_secrets() -> None:
    from triggerd.expressions import secret_renderings

    template = {
        "a": "{{ secrets.T | upper }}",
        "b": "{{ input.x }}",
        "c": ["plain", "{{ [secrets.T, 'y'] }}"],
        "d": "{% if secrets.T %}yes{% endif %}",
    }
    rendered = {"a": "TOK", "b": "in", "c": ["plain", ["tok", "y"]], "d": "yes"}
    assert sorted(secret_renderings(template, rendered)) == [
        ("{% if secrets.T %}yes{% endif %}", "yes"),
        ("{{ [secrets.T, 'y'] }}", "tok"),
        ("{{ [secrets.T, 'y'] }}", "y"),
        ("{{ secrets.T | upper }}", "TOK"),
    ]


@pytest.mark.parametrize("secret", ["\t", "\t\t\t\t", "ab\ncd", "%41%42%43%44"])
def test_no_form_of_a_secret_is_very_short(secret: str) -> None:
    # A URL's query drops tabs and line breaks and decodes %41 to A: such a form was empty
    # (every position of every stored string matched) or matched other text ("ABCD").
    text = "hello ABCD abcd"
    assert Redactor([secret]).redact_text(text) == text
    assert Redactor([secret]).redact_text(f"x{secret}y") == "x***y"


def test_a_long_secrets_shorter_form_in_a_url_query_is_masked() -> None:
    # Written into a URL's query, %4F is sent as O: the form is shorter than the secret,
    # and long enough to mask.
    from yarl import URL

    secret = "p%4Fssword-1234567890"
    url = str(URL(f"http://127.0.0.1:1/echo?k={secret}"))
    assert "pOssword-1234567890" in url
    assert Redactor([secret]).redact_text(url) == "http://127.0.0.1:1/echo?k=***"
