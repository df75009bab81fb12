"""Fixtures for the synthesis tests: a small corpus, its index (built once), configs, the fake server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.records import Document, Section, write_jsonl
from tests.llm.fake_openai import FakeOpenAI, fast_backoff
from tests.synth.responder import synth_responder

__all__ = ["fast_backoff"]

CORPUS: dict[str, dict[str, list[str]]] = {
    "Anxiety Disorders": {
        "Overview": [
            "Anxiety disorders are conditions in which fear or worry is out of proportion to the real danger, "
            "lingers beyond the trigger and shapes daily life through avoidance and distress.",
            "They often begin in childhood or early adulthood, and one person frequently has more than one.",
        ],
        "Panic attacks": [
            "A panic attack is a sudden surge of intense fear that peaks within minutes, with a pounding heart, "
            "breathlessness, trembling, sweating and dizziness. Many people fear they are having a heart attack.",
        ],
        "Approaches to care": [
            "Cognitive behavioural therapy teaches people to test anxious predictions, and graded exposure helps "
            "them approach feared situations step by step until the fear response settles.",
        ],
    },
    "Depressive Disorders": {
        "Overview": [
            "Depressive disorders involve persistent low mood or loss of interest and pleasure, lasting most of "
            "the day, nearly every day, for at least two weeks.",
        ],
        "Physical signs": [
            "Sleep changes, appetite and weight changes, fatigue and slowed movement or restlessness are common "
            "bodily signs; concentration and decision making suffer.",
        ],
        "Approaches to care": [
            "Talking therapies such as behavioural activation, antidepressant medication, exercise and social "
            "support are combined according to severity and preference.",
        ],
    },
    "Sleep-Wake Disorders": {
        "Overview": [
            "Insomnia is difficulty falling asleep, staying asleep or waking too early despite the opportunity "
            "to sleep, with daytime tiredness and irritability.",
        ],
        "Breathing-related sleep": [
            "Obstructive sleep apnoea causes loud snoring, pauses in breathing and gasping at night, and leads "
            "to morning headaches and excessive daytime sleepiness.",
        ],
        "Approaches to care": [
            "Regular wake times, limiting time in bed, avoiding caffeine late in the day and cognitive "
            "behavioural therapy for insomnia improve sleep for most people.",
        ],
    },
}


def make_documents(corpus: dict[str, dict[str, list[str]]] = CORPUS) -> list[Document]:
    """Markdown-shaped documents: the H1 title is a level-1 section, the topics level-2 below it."""
    documents = []
    for number, (title, topics) in enumerate(corpus.items()):
        sections = [Section(section_id="s0", heading=title, level=1, path=[], text="")]
        for index, (heading, paragraphs) in enumerate(topics.items(), start=1):
            sections.append(
                Section(
                    section_id=f"s{index}",
                    heading=heading,
                    level=2,
                    path=[title],
                    text="\n\n".join(paragraphs),
                )
            )
        documents.append(
            Document(
                doc_id=f"doc-{number}",
                source_uri=f"memory://doc-{number}.md",
                sha256="0" * 64,
                title=title,
                parser="markdown",
                sections=sections,
            )
        )
    return documents


def make_config(root: Path, endpoint: Any = None, **synth: Any) -> RagtuneConfig:
    data: dict[str, Any] = {
        "run": {"root": str(root / "runs"), "seed": 0},
        "cache": {"uri": str(root / "cache")},
        "synth": {"questions_per_category": 4, **synth},
    }
    if endpoint is not None:
        data["llm"] = {"generator": endpoint.model_dump()}
    return build_config(data)


@dataclass(frozen=True)
class BuiltCorpus:
    root: Path
    documents: Path
    index_dir: Path  # the index stage's out_dir (holds chunks.jsonl and index/)


def build_corpus(root: Path, documents: list[Document], cache_root: Path) -> BuiltCorpus:
    from ragtune.index import run_index

    root.mkdir(parents=True, exist_ok=True)
    path = root / "documents.jsonl"
    write_jsonl(path, documents)
    run_index(make_config(cache_root), path, root / "indexed")
    return BuiltCorpus(root=root, documents=path, index_dir=root / "indexed")


@pytest.fixture(scope="session")
def built_corpus(tmp_path_factory: pytest.TempPathFactory) -> BuiltCorpus:
    """The sample corpus with its FAISS index, built once per session (read-only: copy to change)."""
    root = tmp_path_factory.mktemp("synth-corpus")
    return build_corpus(root / "corpus", make_documents(), root)


@pytest.fixture(scope="session")
def single_doc_corpus(tmp_path_factory: pytest.TempPathFactory) -> BuiltCorpus:
    """Only the anxiety document: one category, so crafted questions cannot collide across categories."""
    root = tmp_path_factory.mktemp("synth-single")
    documents = make_documents({"Anxiety Disorders": CORPUS["Anxiety Disorders"]})
    return build_corpus(root / "corpus", documents, root)


@pytest.fixture
def corpus_copy(built_corpus: BuiltCorpus, tmp_path: Path) -> BuiltCorpus:
    target = tmp_path / "corpus"
    shutil.copytree(built_corpus.root, target)
    return BuiltCorpus(root=target, documents=target / "documents.jsonl", index_dir=target / "indexed")


@pytest.fixture
def synth_server() -> Iterator[FakeOpenAI]:
    """The fake OpenAI server answering as a diligent generator (see ``responder.py``)."""
    with FakeOpenAI(responder=synth_responder) as server:
        yield server
