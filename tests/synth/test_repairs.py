"""Deterministic repairs of generated text (pure functions; the stage-level tests are in test_synthesize)."""

from __future__ import annotations

import pytest

from ragtune.synth import filters, repairs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "According to the passage, panic attacks peak within minutes.",
            "Panic attacks peak within minutes.",
        ),
        ("Based on the provided context: insomnia is common.", "Insomnia is common."),
        ("In the text above, what is insomnia?", "What is insomnia?"),
        ("The passage states that sleep matters.", "Sleep matters."),
    ],
)
def test_lead_ins_pointing_at_the_source_are_stripped(text: str, expected: str) -> None:
    assert repairs.strip_lead_in(text) == (expected, [repairs.LEAD_IN])


@pytest.mark.parametrize(
    "text",
    [
        "According to Beck, depression has three parts.",  # a named authority is content, not a lead-in
        "In the morning, sleep inertia is strongest.",
        "What does the passage say about sleep?",  # mid-sentence: left for the filter to reject
        "According to the passage,",  # nothing left after it
    ],
)
def test_other_openings_are_left_alone(text: str) -> None:
    assert repairs.strip_lead_in(text) == (text, [])


def test_a_question_that_still_points_at_its_source_is_still_rejected() -> None:
    repaired, applied = repairs.repair_question("According to the passage, what does the passage say?")
    assert applied == [repairs.LEAD_IN]
    assert filters.source_reference(repaired) == "the passage"


@pytest.mark.parametrize(
    ("text", "expected", "applied"),
    [
        ("What is insomnia.", "What is insomnia?", [repairs.QUESTION_MARK]),
        ("How is panic treated", "How is panic treated?", [repairs.QUESTION_MARK]),
        ("What is insomnia ??", "What is insomnia?", [repairs.QUESTION_MARK]),
        (
            "What is insomnia? Insomnia is difficulty sleeping.",
            "What is insomnia?",
            [repairs.TRAILING_TEXT],
        ),
        ("What is insomnia?", "What is insomnia?", []),
        ("Describe graded exposure.", "Describe graded exposure.", []),  # imperative: not a '?' case
        ("Trauma and stress", "Trauma and stress", []),  # no question word: the filter decides
    ],
)
def test_question_marks_are_normalised(text: str, expected: str, applied: list[str]) -> None:
    assert repairs.fix_question_mark(text) == (expected, applied)


def test_repeated_sentences_keep_their_first_occurrence() -> None:
    text = "Sleep matters. Sleep matters. Light helps. sleep  matters."
    assert repairs.drop_repeated_sentences(text) == (
        "Sleep matters. Light helps.",
        [repairs.REPEATED_SENTENCE],
    )
    assert repairs.drop_repeated_sentences("One. Two.") == ("One. Two.", [])


def test_a_cut_off_last_sentence_is_dropped_when_enough_remains() -> None:
    text = "Insomnia is difficulty sleeping. It causes daytime tiredness. Treatment with"
    assert repairs.close_truncated(text, min_chars=20) == (
        "Insomnia is difficulty sleeping. It causes daytime tiredness.",
        [repairs.TRUNCATED],
    )
    # too little would remain, or there is no earlier sentence: unchanged (the filters decide)
    assert repairs.close_truncated(text, min_chars=200) == (text, [])
    assert repairs.close_truncated("Insomnia is difficulty", min_chars=5) == ("Insomnia is difficulty", [])
    assert repairs.close_truncated("Finished sentence.", min_chars=5) == ("Finished sentence.", [])


def test_inline_chunk_ids_are_dropped_from_answers() -> None:
    text = "Exposure helps [3fa9c2d1e0]. It is gradual (chunk 0123abcd, 4567ef01)."
    assert repairs.drop_inline_citations(text) == (
        "Exposure helps. It is gradual.",
        [repairs.INLINE_CITATION],
    )


def test_answer_repairs_compose_in_order() -> None:
    text = "According to the context, exposure helps. Exposure helps. It is gradual. And then the"
    repaired, applied = repairs.repair_answer(text, min_chars=10)
    assert repaired == "Exposure helps. It is gradual."
    assert applied == [repairs.LEAD_IN, repairs.REPEATED_SENTENCE, repairs.TRUNCATED]


@pytest.mark.parametrize(
    "garbage", ["", "   ", "?", "??? ...", "{}", '"', "According to the passage, ", "\x00\n\t", "a" * 3000]
)
def test_garbage_never_crashes_and_only_shrinks_or_fixes_punctuation(garbage: str) -> None:
    question, _ = repairs.repair_question(garbage)
    answer, _ = repairs.repair_answer(garbage, min_chars=40)
    assert len(question) <= len(garbage.strip()) + 1  # at most a '?' added
    assert len(answer) <= len(garbage.strip())


def test_loops_and_unfinished_sentences_are_caught_by_the_filters() -> None:
    loop = "Panic attacks peak within minutes and then fade away slowly over the next hour, " * 2
    assert filters.repeated_run(loop) is not None
    assert filters.repeated_run("Panic attacks peak within minutes and fade.") is None
    assert filters.is_unfinished("Sleep matters and")
    assert not filters.is_unfinished('He said "sleep matters."')
    assert not filters.is_unfinished("Is it insomnia?")
