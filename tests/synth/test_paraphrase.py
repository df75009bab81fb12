"""The knowledge eval set's rewording: each check rejects what it names, and a failure is asked again."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytest

from ragtune.core.config import SynthConfig
from ragtune.core.llm import ChatModel, ChatRequest, LLMFailure
from ragtune.core.records import InstructionItem
from ragtune.synth import filters
from ragtune.synth.paraphrase import CHANGED_MEANING, NEAR_DUPLICATE_WORDING, Paraphraser
from ragtune.synth.prompts import QuestionReply, synth_templates
from tests.evaluate.helpers import make_item

_WORD = re.compile(r"[a-z]+")
SEED_STEP = 1000


def bag_of_words(texts: Sequence[str]) -> np.ndarray:
    """Unit word-count vectors over the texts' shared vocabulary (as the embedder's are unit vectors)."""
    vocabulary = sorted({w for t in texts for w in _WORD.findall(t.lower())})
    index = {w: i for i, w in enumerate(vocabulary)}
    vectors = np.zeros((len(texts), len(vocabulary)))
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            vectors[row, index[word]] += 1
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class ScriptedModel:
    """Replies from ``script[(original question, attempt)]``; records every request it got."""

    def __init__(self, script: dict[tuple[str, int], str]) -> None:
        self.script = script
        self.requests: list[ChatRequest] = []

    def structured_many(
        self, requests: Sequence[ChatRequest], schema: type[QuestionReply], desc: str = "llm"
    ) -> list[QuestionReply | LLMFailure]:
        replies: list[QuestionReply | LLMFailure] = []
        for request in requests:
            self.requests.append(request)
            prompt = request.messages[0]["content"]
            original = prompt.rsplit("Original question: ", 1)[1].strip()
            attempt = (request.seed or 0) // SEED_STEP
            reply = self.script.get((original, attempt))
            replies.append(
                LLMFailure(reason="llm error: none scripted")
                if reply is None
                else QuestionReply(question=reply)
            )
        return replies


ANSWER = "Panic disorder is treated with cognitive behavioural therapy and with medication."
ORIGINAL = "How is panic disorder treated in adults?"


def paraphraser(model: ScriptedModel, temperature: float = 0.7, **settings: Any) -> Paraphraser:
    return Paraphraser(
        generator=cast(ChatModel, model),
        template=synth_templates().get("paraphrase"),
        embed=bag_of_words,
        check=lambda text: None,
        settings=SynthConfig(**{"relevance_threshold": 0.2, "paraphrase_min_similarity": 0.4, **settings}),
        seed=0,
        seed_step=SEED_STEP,
        temperature=temperature,
        max_tokens=64,
    )


def item(question: str = ORIGINAL, answer: str = ANSWER, item_id: str = "i1") -> InstructionItem:
    return make_item(item_id, "Anxiety", question, answer, [answer])


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("How is panic disorder treated in adults, then?", NEAR_DUPLICATE_WORDING),
        ("In which year did builders finish the Eiffel Tower?", CHANGED_MEANING),  # a copied example
        ("Panic disorder in adults is treated how?", None),
        ("Adults with panic disorder get treatment.", filters.NOT_A_QUESTION),
    ],
)
def test_each_check_names_the_rewordings_it_rejects(reply: str, reason: str | None) -> None:
    model = ScriptedModel({(ORIGINAL, 0): reply})
    kept, rejected = paraphraser(model, paraphrase_attempts=1).reword([item()])
    if reason is None:
        assert [k.question for k in kept] == [reply] and not rejected
    else:
        assert not kept and rejected == {reason: 1}


def test_a_rewording_that_no_longer_asks_for_the_answer_is_rejected_as_irrelevant() -> None:
    # close to the question (same words), far from the answer: the question now asks about children
    original = "At what age do children show panic disorder first?"
    reply = "When do children first show panic disorder, at what age?"
    model = ScriptedModel({(original, 0): reply})
    p = paraphraser(model, relevance_threshold=0.5, paraphrase_attempts=1)
    kept, rejected = p.reword([item(question=original)])
    assert not kept and rejected == {filters.IRRELEVANT: 1}


def test_a_failed_rewording_is_asked_again_with_the_next_seed_and_kept_when_it_passes() -> None:
    second = "Which treatment helps adults with panic disorder?"
    model = ScriptedModel({(ORIGINAL, 0): ORIGINAL, (ORIGINAL, 1): second})
    kept, rejected = paraphraser(model, paraphrase_attempts=3).reword([item()])
    assert [k.question for k in kept] == [second] and not rejected
    assert [r.seed for r in model.requests] == [0, SEED_STEP]  # no third request once one passed
    assert kept[0].answer == ANSWER and kept[0].provenance.paraphrase_of == "i1"


def test_an_item_failing_every_attempt_is_counted_once_by_its_last_reason() -> None:
    model = ScriptedModel({(ORIGINAL, 0): ORIGINAL, (ORIGINAL, 1): "Is the Eiffel Tower finished?"})
    kept, rejected = paraphraser(model, paraphrase_attempts=3).reword([item()])
    assert not kept
    assert rejected == {filters.LLM_FAILURE: 1}  # the third attempt had no scripted reply
    assert len(model.requests) == 3


def test_at_temperature_zero_one_attempt_is_made_since_another_seed_gives_the_same_reply() -> None:
    model = ScriptedModel({(ORIGINAL, 0): ORIGINAL})
    kept, rejected = paraphraser(model, temperature=0.0, paraphrase_attempts=3).reword([item()])
    assert not kept and rejected == {NEAR_DUPLICATE_WORDING: 1}
    assert len(model.requests) == 1


def test_the_prompt_ends_with_the_original_question_after_its_worked_examples() -> None:
    prompt = synth_templates().get("paraphrase").render(question=ORIGINAL)
    assert prompt.rstrip().endswith(f"Original question: {ORIGINAL}")
    examples = [json.loads(line)["question"] for line in prompt.splitlines() if line.startswith("{")]
    assert len(examples) == 2 and ORIGINAL not in examples
