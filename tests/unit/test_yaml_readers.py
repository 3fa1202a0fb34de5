"""libyaml and the pure-Python reader give the same values and the same problems."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from triggerd.definitions import loading, schema
from triggerd.definitions.problems import Report

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not loading.LIBYAML, reason="PyYAML is built without libyaml here"
)

TRICKY = [
    "on: yes\noff: no\nY: n\nalso: [On, OFF, Yes, NO, y, N]\n",
    "t: true\nf: False\nT: TRUE\n",
    "day: 2024-01-01\nat: 2024-01-01T10:00:00Z\nspaced: 2001-12-14 21:59:43.10 -5\n",
    "base: &b {a: 1, b: [1, 2]}\nuse: *b\nmerged:\n  <<: *b\n  a: 2\n",
    "defaults: &d {x: 1}\nmore: &m {y: 2}\nboth:\n  <<: [*d, *m]\n  z: 3\n",
    "a: 1\nb: 2\na: 3\n",
    "m:\n  <<: {k: 1}\n  k: 2\n  k: 3\n",
    "? [1, 2]\n: list key\n1: int key\nnull: null key\n",
    "x: !!binary aGVsbG8=\ny: !!set {a, b}\nz: !custom 1\n",
    "f: 1.5\ninf: .inf\nnan: .nan\nhex: 0x1F\noct: 0o17\nsexa: 1:30\n",
    "big: " + "9" * 5000 + "\n",
    "",
    "# only a comment\n",
    "---\na: 1\n---\nb: 2\n",
    "a: *nowhere\n",
    "a: &x 1\nb: &x 2\n",
    "a: &r [1, *r]\n",
    "key: value\n  bad indent: here\n",
    "a: [1, 2\n",
    "\tkey: tab\n",
    "a: 'unterminated\n",
    "a: b: c\n",
    "- 1\n- x: 2\n  y: [3, {z: 4}]\n",
    # Keys and values the quick paths (plain string keys, first-character resolving) must
    # leave to the full ones: quoted look-alikes, the value key, empty and null keys.
    "'true': \"1\"\n\"null\": '~'\nt1: f2\nn: N\nx: \"\"\ny:\nz: ''\n",
    "=: value key\na: 1\n",
    "a: 1\n\"a\": 2\n",
    "'': empty\n~: tilde\n",
    "m: {<<: {k: 1}, j: 2}\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: \"\\u00e9 \\x41 \\U0001F600\"\nb: |\n  line\n   more\nc: >-\n  folded\n  text\n",
    "a: \x07bell\n",
    "workflows:\n  - key: k\n    graph: {nodes: [{id: a, type: noop}]}\n",
    "!!map {a: 1}\n",
    "!!str 12\n",
    "[" * 65 + "]" * 65 + "\n",
    "[" * 64 + "]" * 64 + "\n",
    "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n",
    "a: &a " + "[" * 30 + "]" * 30 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n",
    "\n".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 8))
    .replace("*l0", "x")
    + "\n",
]


def _test_texts() -> list[str]:
    """Every multi-line string constant of the unit tests (the definition files they use,
    good and bad)."""
    texts: list[str] = []
    for source in sorted((ROOT / "tests" / "unit").glob("test_*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "\n" in node.value
                and node.value not in texts
            ):
                texts.append(node.value)
    return texts


def _files() -> list[str]:
    paths = sorted(ROOT.glob("config/**/*.y*ml"))
    assert paths  # the examples are part of the corpus
    return [p.read_text(encoding="utf-8") for p in paths]


def _read(text: str, **options: Any) -> tuple[Any, ...]:
    report = Report(file="f.yaml")
    try:
        return loading.parse_yaml(text, report, **options), report.items
    except Exception as exc:  # e.g. a control character: ReaderError, from either reader
        return type(exc), str(exc)


def _both(text: str, **limits: Any) -> tuple[Any, Any]:
    return _read(text, **limits), _read(text, libyaml=False, **limits)


@pytest.mark.parametrize("text", TRICKY + _files())
def test_tricky_cases_and_shipped_files_read_the_same(text: str) -> None:
    fast, slow = _both(text)
    assert fast == slow


def test_every_yaml_text_of_the_unit_tests_reads_the_same() -> None:
    texts = _test_texts()
    assert len(texts) > 50
    for text in texts:
        fast, slow = _both(text)
        assert fast == slow, text


def test_limits_passed_in_are_kept() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\nc: " + "[" * 5 + "]" * 5 + "\n"
    for limits in ({"max_depth": 4}, {"max_depth": 5}, {"max_values": 15, "max_factor": 1}):
        fast, slow = _both(text, **limits)
        assert fast == slow, limits
    assert _read(text, max_depth=4)[1] == [((), "nested deeper than 4 levels (at line 3)")]


def test_a_very_deep_document_is_refused_without_composing_it() -> None:
    # libyaml's composer recurses once per level in C: 100,000 levels must never reach it.
    for text in ("[" * 100_000 + "]" * 100_000, "a:\n" + "".join(
        " " * i + "- \n" for i in range(1, 20_000)
    )):
        report = Report(file="f.yaml")
        assert loading.parse_yaml(text, report) == (False, None)
        assert report.items == [((), "nested deeper than 64 levels (at line 1)")] or (
            report.items[0][1].startswith("nested deeper than 64 levels")
        )


def test_the_event_pass_measures_an_alias_by_the_height_of_its_node() -> None:
    # *a stands 4 levels down and its node is 3 levels high: 7 levels.
    text = "a: &a [[[1]]]\nb: [[[*a]]]\n"
    loading._check_events(text, 7)
    with pytest.raises(loading._TooDeep) as caught:
        loading._check_events(text, 6)
    assert caught.value.line == 2
    assert yaml.__with_libyaml__


def _whole(document: Any) -> list[Any]:
    report = Report(file="f.yaml")
    schema._collect(schema._validator(None).iter_errors(document), (), report)
    return report.items


def _split(document: Any) -> list[Any]:
    report = Report(file="f.yaml")
    schema.validate_file(document, report)
    return report.items


def _mistakes() -> list[Any]:
    good = {
        "key": "wf",
        "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [
            {"name": "c", "type": "cron", "cron": "* * * * *"},
            {"name": "h", "type": "webhook", "path": "wf/h"},
            {"name": "m", "type": "manual"},
        ],
    }
    bad_triggers: list[Any] = [
        {"name": "c", "type": "cron"},
        {"name": "c", "type": "cron", "cron": 5, "path": "x", "extra": 1},
        {"name": "h", "type": "webhook", "cron": "* * * * *", "methods": ["PUT", "PUT"]},
        {"name": "m", "type": "manual", "version": 0, "input": []},
        {"type": "manual"},
        {"name": "x"},
        {"name": "x", "type": "crn"},
        {"name": "x", "type": ["cron"]},
        {"name": "x", "type": None},
        {"name": "", "type": "manual", "enabled": "yes"},
        "a string",
        None,
        [],
    ]
    documents: list[Any] = [
        [], None, "text", {}, {"workflows": {}}, {"workflows": [], "extra": 1},
        {"workflows": [good, "not a workflow", None]},
        {"workflows": [{**good, "triggers": {}}]},
        {"workflows": [{**good, "triggers": None, "bogus": 1}]},
        {"workflows": [{"graph": {"nodes": []}, "triggers": [{"name": "x"}]}]},
    ]
    # Validity of the rest of a trigger is remembered by its JSON text: a bad name, or a
    # value equal in Python but another JSON value (1 == True), must still be found.
    cron = {"name": "c", "type": "cron", "cron": "* * * * *", "enabled": True}
    documents.append({"workflows": [{**good, "triggers": [
        cron, {**cron, "name": "Bad Name"}, {**cron, "name": "d", "enabled": 1},
        {**cron, "name": "e", "enabled": 1.0}, {**cron, "name": "f"},
    ]}]})
    # Names and keys are checked apart from the rest, which is remembered by its text.
    odd_names: list[Any] = ["a" * 100, "a" * 101, "ok\n", "\nok", "", 5, None, True, "k\u00e9"]
    documents.append({"workflows": [
        {**good, "key": name, "triggers": [{**cron, "name": name}, cron]} for name in odd_names
    ]})
    documents.append({"workflows": [good, {**good, "key": "wf2"}, {**good, "triggers": []},
                                    {k: v for k, v in good.items() if k != "key"},
                                    {**good, "name": 1}, {**good, "triggers": [None]}]})
    for trigger in bad_triggers:
        workflow = {**good, "triggers": [*good["triggers"], trigger]}
        documents.append({"workflows": [good, workflow], "also": True})
    return documents


def test_validating_a_trigger_at_a_time_finds_what_the_whole_schema_finds() -> None:
    documents = _mistakes()
    for text in _test_texts():
        parsed = _read(text)[0]
        if isinstance(parsed, tuple) and parsed[0]:
            documents.append(parsed[1])
    found = 0
    for document in documents:
        whole = _whole(document)
        assert _split(document) == whole, document
        found += bool(whole)
    assert found > 20


MORE_DEPTHS = [
    "a:\n" + "".join(" " * i + "- \n" for i in range(1, 70)),
    "a: 1\nb:\n" + "".join(" " * i + "- x\n" + " " * i + "- \n" for i in range(1, 70)),
    "a: [1, {b: 2}]\nc: " + "{k: " * 65 + "1" + "}" * 65 + "\n",
    "dup: 1\ndup: 2\ndeep: " + "[" * 65 + "]" * 65 + "\n",
    "m:\n  <<: {k: " + "[" * 64 + "]" * 64 + "}\n",
    "s: &s x\nt: [*s, *s, *s]\n",
    "k: &k a\n*k : b\n",
    "? " + "[" * 64 + "1" + "]" * 64 + "\n: v\n",
]


@pytest.mark.parametrize("text", MORE_DEPTHS)
def test_depths_aliases_and_merges_read_the_same(text: str) -> None:
    fast, slow = _both(text)
    assert fast == slow


def test_a_file_without_aliases_is_read_in_one_libyaml_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The event pass that measures depth and aliases (a second reading of the whole file)
    runs only for files that need it: libyaml bounds nesting itself, and the builder
    measures depth and notices aliases on the way."""
    passes: list[str] = []
    real = loading._check_events

    def counting(text: str, max_depth: int) -> bool:
        passes.append(text)
        return real(text, max_depth)

    monkeypatch.setattr(loading, "_check_events", counting)
    plain = "workflows:\n  - key: k\n    graph: {nodes: [{id: a, type: noop}]}\n"
    assert _read(plain) == _read(plain, libyaml=False)
    assert passes == []
    aliased = "a: &a [1]\nb: *a\n"
    assert _read(aliased) == _read(aliased, libyaml=False)
    assert passes == [aliased]


def test_a_file_is_validated_once_per_distinct_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 triggers of a file are a few thousand distinct schedules with distinct
    names: jsonschema sees each distinct workflow and trigger once (names apart)."""
    from jsonschema import Draft202012Validator

    calls: list[Any] = []
    real = Draft202012Validator.is_valid

    def counting(self: Any, instance: Any, _schema: Any = None) -> bool:
        calls.append(instance)
        return bool(real(self, instance, _schema))

    monkeypatch.setattr(Draft202012Validator, "is_valid", counting)
    cron = {"type": "cron", "cron": "5 * * * *", "timezone": "UTC"}
    document = {"workflows": [
        {"key": f"w{w}", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
         "triggers": [{"name": f"t{w}-{t}", **cron} for t in range(10)]}
        for w in range(20)
    ]}
    assert _split(document) == []
    assert len(calls) == 2  # one workflow shape, one trigger shape


def test_numbers_are_read_as_yaml_1_2_and_json_write_them() -> None:
    """YAML 1.1 (PyYAML's) read 12:30 as 750, 01234 as 668 and 1_000 as 1000, and left 1e3
    a string: a trigger's input changed without a word."""
    text = ("at: 12:30\nzip: 01234\nthousand: 1_000\nn: 1e3\nhex: 0x1F\nneg: -5\nf: -1.5\n"
            "half: .5\nplus: +3\nzero: 0\nword: 1e\n")
    expected = {"at": "12:30", "zip": "01234", "thousand": "1_000", "n": 1000.0, "hex": 31,
                "neg": -5, "f": -1.5, "half": 0.5, "plus": 3, "zero": 0, "word": "1e"}
    for values, problems in _both(text):
        assert (values, problems) == ((True, expected), [])
