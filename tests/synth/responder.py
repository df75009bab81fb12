"""A responder for :class:`tests.llm.fake_openai.FakeOpenAI` that plays the synthesis generator.

It reads the prompts the packaged templates write and answers as a diligent model would: a question
built from the words of the passage (a different slice per question type and seed), an answer that
quotes the first retrieved chunk and cites it, a judge score of 5. Question types with special names
make it misbehave on purpose, so the filters can be tested end to end:

* ``short`` — a too-short question; ``long`` — a too-long one;
* ``dup`` — exactly the ``ok`` question of the same chunk; ``neardup`` — it with one word added;
* ``refuse`` — a question whose answer is "not in the context";
* ``ungrounded`` — a question answered with unrelated facts;
* ``offtopic`` — a question about something else, answered by quoting the context;
* ``garbage`` — never valid JSON (also on the repair request);
* ``mentions`` — a question that points at "the passage"; ``statement`` — not a question;
* ``leadin`` — "According to the passage, what ... ." (repaired: lead-in dropped, "?" fixed);
* ``answered`` — a question followed by its own answer (repaired: cut after the "?");
* ``rambling`` — an answer with a lead-in, a repeated sentence and a cut-off ending (repaired);
* ``flaky`` — garbage on the first attempt, a good question on the retry (another seed).

Asked to reword a question (the knowledge eval set), it answers with the question's content words
in a new frame, except for "Which features ..." (criteria) questions, which it only repeats with
one word added: the near-duplicate wording the set rejects.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ragtune.synth.filters import content_words
from ragtune.synth.stage import RETRY_SEED_STEP

_QUESTION = re.compile(r"Write one (.+?) question on this topic\.")
_HEADING = re.compile(r"^Topic: (.*)$", re.MULTILINE)
_PASSAGE = re.compile(r'^Topic: .*\n"""\n(.*?)\n"""', re.DOTALL | re.MULTILINE)
_CONTEXT_HEAD = re.compile(r"^\[([0-9a-f]+)\] ", re.MULTILINE)
_ORIGINAL = re.compile(r"^Original question: (.*)$", re.MULTILINE)
PARAPHRASE_START = "You reword study-guide questions"

PREFIXES = {
    "definition": "What is meant by",
    "criteria": "Which features characterise",
    "differential": "How are these told apart:",
    "case vignette": "A patient shows signs of",
    "treatment": "How is care organised for",
}
UNGROUNDED_ANSWER = (
    "The Eiffel Tower in Paris was completed in 1889 for the World Fair and is 330 metres tall."
)
OFFTOPIC_QUESTION = "What colour does the sky on Mars turn during a planet-wide dust storm?"


def first_message(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    return str(messages[0].get("content", ""))


def passage_of(prompt: str) -> str | None:
    match = _PASSAGE.search(prompt)
    return match.group(1) if match else None


def question_of(prompt: str) -> str | None:
    """The question of an answer prompt."""
    if "\nQuestion: " not in prompt or "Context:" not in prompt:
        return None
    return prompt.rsplit("\nQuestion: ", 1)[1].split("\n")[0].strip()


def context_ids(prompt: str) -> list[str]:
    return _CONTEXT_HEAD.findall(prompt.split("Context:", 1)[1]) if "Context:" in prompt else []


def first_context_text(prompt: str) -> str:
    body = prompt.split("Context:", 1)[1]
    lines = body.strip("\n").split("\n")
    text: list[str] = []
    for line in lines[1:]:
        if not line.strip():
            break
        text.append(line)
    return " ".join(text)


def ok_question(passage: str, heading: str, qtype: str, seed: int) -> str:
    words = list(dict.fromkeys(content_words(passage)))
    index = list(PREFIXES).index(qtype) if qtype in PREFIXES else 0
    start = (index * 3 + seed * 2) % max(1, len(words) - 3)
    topic = " ".join(words[start : start + 4])
    return f"{PREFIXES.get(qtype, 'What is meant by')} {topic} in {heading.split(' › ')[-1]}?"


def question_reply(prompt: str, body: dict[str, Any]) -> str:
    match = _QUESTION.search(prompt)
    qtype = match.group(1) if match else "definition"
    heading_match = _HEADING.search(prompt)
    heading = heading_match.group(1) if heading_match else ""
    passage = passage_of(prompt) or ""
    seed = int(body.get("seed") or 0)
    if qtype == "garbage" or (qtype == "flaky" and seed < RETRY_SEED_STEP):
        return "Sure! Here is a good question: {what about"
    base = ok_question(passage, heading, "definition", seed)
    question = {
        "short": "Why?",
        "long": "What " + "really " * 120 + "happens?",
        "dup": base,
        "ok": base,
        "neardup": base[:-1] + " exactly?",
        "refuse": f"Which medication doses are recommended for {heading.split(' › ')[-1]} in children?",
        "ungrounded": f"Which historical events shaped the naming of {heading.split(' › ')[-1]}?",
        "offtopic": OFFTOPIC_QUESTION,
        "statement": f"The {heading.split(' › ')[-1]} section is clear and needs no further study.",
        "mentions": f"What does the passage say about {heading.split(' › ')[-1]}?",
        "leadin": "According to the passage, "
        + ok_question(passage, heading, "differential", seed).lower()[:-1]
        + ".",
        "answered": f"{ok_question(passage, heading, 'criteria', seed)} It is described in the chapter.",
        "rambling": ok_question(passage, heading, "treatment", seed).replace(
            "How is care", "How is rambling care"
        ),
    }.get(qtype) or ok_question(passage, heading, qtype, seed)
    return json.dumps({"question": question})


def answer_reply(prompt: str) -> str:
    question = question_of(prompt) or ""
    ids = context_ids(prompt)
    if question.startswith("Which medication doses"):
        return json.dumps({"answer": "I cannot answer this: it is not in the context.", "citations": []})
    if question.startswith("Which historical events"):
        return json.dumps({"answer": UNGROUNDED_ANSWER, "citations": ids[:1]})
    sentences = re.split(r"(?<=[.!?])\s+", first_context_text(prompt))
    if question.startswith("How is rambling care"):
        rambling = f"Based on the context, {sentences[0]} {sentences[0]} And then the"
        return json.dumps({"answer": rambling, "citations": ids[:1]})
    return json.dumps({"answer": " ".join(sentences[:2]), "citations": ids[:1]})


def synth_responder(body: dict[str, Any]) -> str:
    """What the fake generator (and judge) replies to ``body``."""
    prompt = first_message(body)
    if passage_of(prompt) is not None:  # a question request, or its repair
        return question_reply(prompt, body)
    if prompt.startswith("You check whether an answer is supported"):
        answer = prompt.rsplit("\nAnswer: ", 1)[-1]
        score = 1 if answer.startswith("The Eiffel Tower") else 5
        return json.dumps({"score": score, "reason": "checked against the context"})
    if question_of(prompt) is not None:
        return answer_reply(prompt)
    if prompt.startswith(PARAPHRASE_START):
        return paraphrase_reply(prompt)
    return json.dumps({"reply": "unexpected prompt"})


def paraphrase_reply(prompt: str) -> str:
    match = _ORIGINAL.search(prompt)
    original = match.group(1).strip() if match else ""
    if original.startswith("Which features"):
        return json.dumps({"question": original[:-1] + " exactly?"})
    return json.dumps({"question": f"Could you explain {' '.join(content_words(original))}?"})


def kind_of(body: dict[str, Any]) -> str:
    """question, answer, judge, paraphrase or repair — what a recorded request asked for."""
    if len(body.get("messages", [])) > 1:
        return "repair"
    prompt = first_message(body)
    if passage_of(prompt) is not None:
        return "question"
    if prompt.startswith("You check whether"):
        return "judge"
    if prompt.startswith(PARAPHRASE_START):
        return "paraphrase"
    return "answer" if question_of(prompt) is not None else "other"
