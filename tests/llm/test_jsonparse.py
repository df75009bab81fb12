from __future__ import annotations

import pytest

from ragtune.core.llm import parse_json_object
from ragtune.core.llm.jsonparse import has_complete_object, json_object_end


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t",
        "I am sorry, I cannot help with that.",
        "The answer is 42.",
        '{"question": "What is depression?", "answer": "A mood dis',  # truncated
        '{"a": {"b": 1}, "c": "unfinished',  # truncated with a complete inner object
        '```json\n{"question": \n```',  # fenced but truncated
        "[1, 2, 3]",  # JSON, but not an object
        '"just a string"',
        "null",
        "{not json at all}",
        "}{",
        "{{{{",
        "Here: {a, b} and nothing else",
    ],
)
def test_garbage_yields_none(text: str) -> None:
    assert parse_json_object(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        (
            'Sure! Here is the JSON:\n{"question": "Why?", "n": 2}\nHope that helps.',
            {"question": "Why?", "n": 2},
        ),
        ('```json\n{"question": "Why?"}\n```', {"question": "Why?"}),
        ('```\n{\n  "q": "x"\n}\n```', {"q": "x"}),
        (
            '{"text": "braces } and { inside strings", "k": 1}',
            {"text": "braces } and { inside strings", "k": 1},
        ),
        ('{"text": "escaped \\" quote }", "k": 2}', {"text": 'escaped " quote }', "k": 2}),
        ('{"outer": {"inner": [1, {"deep": true}]}}', {"outer": {"inner": [1, {"deep": True}]}}),
        ('{"a": 1,}', {"a": 1}),  # trailing comma
        ("{'a': 'single quotes'}", {"a": "single quotes"}),
        ('Use {braces} like this: {"a": 1}', {"a": 1}),  # prose braces skipped
        ('{"first": 1} {"second": 2}', {"first": 1}),
        ('[{"in": "array"}]', {"in": "array"}),
    ],
)
def test_finds_first_object(text: str, expected: dict[str, object]) -> None:
    assert parse_json_object(text) == expected


def test_object_end_and_completeness() -> None:
    text = 'x {"a": "}"} y'
    assert json_object_end(text, 2) == len('x {"a": "}"}')
    assert has_complete_object(text)
    assert not has_complete_object('{"question": "still open')
    assert not has_complete_object("no braces")


def test_string_value_prefills_are_recognised() -> None:
    from ragtune.core.llm.jsonparse import opens_string_value

    assert opens_string_value('{"question": "')
    assert opens_string_value('{"a": {"b": "')
    assert not opens_string_value('{"score": ')
    assert not opens_string_value('"loose string')  # not inside an object
    assert not opens_string_value("")


def test_close_string_value_keeps_the_value_and_closes_the_object() -> None:
    from ragtune.core.llm.jsonparse import close_string_value, parse_json_object

    prefill = '{"question": "'
    wandering = 'What is panic disorder?",\n\n"Greeting": "Ouch"'
    closed = close_string_value(prefill, wandering)
    assert closed == 'What is panic disorder?"}'
    assert parse_json_object(prefill + closed) == {"question": "What is panic disorder?"}
    escaped = close_string_value(prefill, 'Is \\"worry\\" normal?" and more')
    assert parse_json_object(prefill + str(escaped)) == {"question": 'Is "worry" normal?'}
    assert close_string_value(prefill, "still writing") is None
    nested = close_string_value('{"a": {"b": "', 'x" junk')
    assert nested == 'x"}}'
