"""Reading the judge: what is unambiguous is accepted, everything else is None (a recorded failure)."""

from __future__ import annotations

import pytest

from ragtune.evaluate import parse_judge_score, parse_pairwise_verdict
from ragtune.evaluate.judge import PAIRWISE_PREFILL, SCORE_PREFILL


@pytest.mark.parametrize(
    ("text", "score", "reason", "parsed_from"),
    [
        ('{"score": 7, "reason": "Mostly right."}', 7, "Mostly right.", "json"),
        ('{"score": 10, "reason": "Complete."}', 10, "Complete.", "json"),
        ('{"score": 1, "reason": "Wrong."}', 1, "Wrong.", "json"),
        # chatter and code fences around the object
        (
            'Sure! Here is my grade:\n```json\n{"score": 8, "reason": "good"}\n```\nHope that helps.',
            8,
            "good",
            "json",
        ),
        # extra fields are ignored, key case does not matter
        ('{"Score": 6, "reason": "ok", "confidence": 0.9, "notes": ["a"]}', 6, "ok", "json"),
        # the prefill the weak local judge continues
        (SCORE_PREFILL + '4, "reason": "vague"}', 4, "vague", "json"),
        # numbers as strings, fractions, floats (rounded), single quotes, trailing commas
        ('{"score": "9", "reason": "x"}', 9, "x", "json"),
        ('{"score": "8/10"}', 8, "", "json"),
        ('{"score": 7.5, "reason": "between"}', 8, "between", "json"),
        ('{"score": 6.0}', 6, "", "json"),
        ("{'score': 5, 'reason': 'single quotes'}", 5, "single quotes", "json"),
        ('{"score": 3, "reason": "trailing",}', 3, "trailing", "json"),
        # nested one level down
        ('{"evaluation": {"score": 2, "reason": "poor"}}', 2, "poor", "json"),
        # an example object that is not valid JSON is skipped
        ('Format: {"score": <int>}. My grade: {"score": 9, "reason": "fine"}', 9, "fine", "json"),
        # truncated after the score's delimiter: the score is complete
        (
            '{"score": 7, "reason": "The answer covers the main point but',
            7,
            "The answer covers the main point but",
            "partial_json",
        ),
        ('{"score": 10,', 10, "", "partial_json"),
        # prose fallbacks
        ("Score: 7/10", 7, "Score: 7/10", "text"),
        ("10/10", 10, "10/10", "text"),
        ("**Score:** 9\nThe answer matches the reference.", 9, None, "text"),
        ("I would give this a score of 6 out of 10.", 6, None, "text"),
        ("Rating = 3. It misses the key criterion.", 3, None, "text"),
        ("The score is 8. That is, 8/10 overall.", 8, None, "text"),
    ],
)
def test_accepts_unambiguous_scores(text: str, score: int, reason: str | None, parsed_from: str) -> None:
    parsed = parse_judge_score(text)
    assert parsed is not None, text
    assert parsed.score == score
    assert parsed.parsed_from == parsed_from
    if reason is not None:
        assert parsed.reason == reason


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "   \n\t ",
        "The answer is good and mostly matches the reference.",
        "score: eleven",
        "Score: 11",
        "Score: 0/10",
        "score: -3",
        '{"score": 0, "reason": "nothing"}',
        '{"score": 42, "reason": "great"}',
        '{"score": -1}',
        '{"score": 10.6}',
        '{"score": null, "reason": "n/a"}',
        '{"score": true}',
        '{"score": "seven"}',
        '{"score": [7]}',
        '{"score": "7/5"}',
        '{"reason": "forgot the score"}',
        '{"score": 1',  # cut mid-number: could have been 10
        '{"score": ',  # the bare prefill
        SCORE_PREFILL + "seven",
        '{"score": 7, "score": 9 ',  # truncated with two different scores
        "4/5",  # another scale
        "Score: 3/10 at first, but on reflection score: 8/10",  # two different scores
        "The score is 7. 8/10",
        '{"score": 42} Score: 7/10',  # the JSON decides: out of range
        "\x00\x01\x02{{{{",
        "}{" * 50,
        "🙂" * 100,
        "[1, 2, 3]",
        '"score"',
    ],
)
def test_rejects_garbage_and_out_of_range(text: str | None) -> None:
    assert parse_judge_score(text) is None


def test_reason_is_bounded() -> None:
    parsed = parse_judge_score('{"score": 5, "reason": "' + "x" * 5000 + '"}')
    assert parsed is not None and len(parsed.reason) <= 1000


@pytest.mark.parametrize(
    ("text", "winner"),
    [
        ('{"winner": "A", "reason": "more complete"}', "A"),
        ('{"winner": "b"}', "B"),
        ('{"winner": "tie", "reason": "same"}', "tie"),
        ('{"winner": "Answer B", "reason": "x"}', "B"),
        ('{"Winner": "TIE"}', "tie"),
        ('{"winner": "C"}', "tie"),
        (PAIRWISE_PREFILL + 'A", "reason": "cites the context"}', "A"),
        ('```json\n{"winner": "B"}\n```', "B"),
        ('{"winner": "A", "reason": "cut off', "A"),
        ("[[A]]", "A"),
        ("After comparing: [[B]]", "B"),
        ("Winner: tie", "tie"),
        ("The better answer is Answer A.", "A"),
        ("Answer B is better because it cites the context.", "B"),
    ],
)
def test_pairwise_accepts(text: str, winner: str) -> None:
    parsed = parse_pairwise_verdict(text)
    assert parsed is not None, text
    assert parsed.winner == winner


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "Both answers have merits.",
        '{"winner": "both answers are fine but A is longer"}',
        '{"winner": "D"}',
        '{"winner": 1}',
        '{"winner": "',
        PAIRWISE_PREFILL,
        '{"reason": "no winner given"}',
        "It's a tie. Answer A is better.",  # contradicts itself
        "[[A]] ... [[B]]",
    ],
)
def test_pairwise_rejects(text: str | None) -> None:
    assert parse_pairwise_verdict(text) is None
