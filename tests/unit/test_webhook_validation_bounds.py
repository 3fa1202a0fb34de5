"""A 422's list of parameter_schema errors is bounded in what it reads, not only in what
it lists: a large array of wrong items made a million errors, all built and sorted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from jsonschema import Draft202012Validator, ValidationError

from triggerd.webhooks.routes import WebhookRoute
from triggerd.webhooks.validation import MAX_LISTED_ERRORS, MAX_READ_ERRORS, validation_errors


class CountingValidator:
    """A validator that counts the errors taken from it."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.real = Draft202012Validator(schema)
        self.pulled = 0

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        for error in self.real.iter_errors(instance):
            self.pulled += 1
            yield error


class Route:
    def __init__(self, validator: CountingValidator) -> None:
        self.validator = validator
        self.quick_check = None


def test_the_errors_read_are_bounded_and_the_listed_ones_sorted() -> None:
    schema = {"type": "object", "properties": {"items": {"type": "array",
                                                         "items": {"type": "string"}}}}
    validator = CountingValidator(schema)
    route = cast(WebhookRoute, Route(validator))
    errors = validation_errors(route, {"items": list(range(50_000))})
    assert len(errors) == MAX_LISTED_ERRORS
    assert validator.pulled == MAX_READ_ERRORS  # of 50,000
    assert errors == sorted(errors, key=lambda e: (e["path"], e["message"]))
    assert errors[0] == {"path": "$.items[0]", "message": "0 is not of type 'string'"}
