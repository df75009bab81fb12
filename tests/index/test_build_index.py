"""The index stage end to end on a tiny documents.jsonl (FAISS), reruns through the embedding
cache, and the retriever later stages use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.core.embedding import SentenceTransformerEmbedder
from ragtune.core.errors import ConfigError, InputError
from ragtune.core.records import Chunk, Document, Section, read_jsonl
from ragtune.index import IndexReport, Retriever, ScoredChunk, load_retriever, run_index
from tests.index.corpus import TOPICS, make_config, topics_document, write_documents

SCANNED = Document(
    doc_id="scanned-1",
    source_uri="scans/scanned.pdf",
    sha256="1" * 64,
    title="Scanned leaflet",
    parser="pdf",
    sections=[Section(section_id="s0", heading="", level=0, path=[], text="  \n ")],
)


def guideline(extra_sentence: str = "") -> Document:
    long_text = " ".join(
        f"Step {i}: the ward team reviews observations, medication charts and risk assessments before handover."
        for i in range(1, 9)
    )
    return Document(
        doc_id="ward-guide-1",
        source_uri="guides/ward.md",
        sha256="2" * 64,
        title="Ward guide",
        parser="markdown",
        sections=[
            Section(section_id="s0", heading="Ward routine", level=1, path=[], text=long_text),
            Section(
                section_id="s1",
                heading="Rapid tranquillisation",
                level=2,
                path=["Ward routine"],
                text="Offer oral medication before intramuscular options, and monitor vital signs afterwards."
                + extra_sentence,
            ),
        ],
    )


@pytest.fixture
def built(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> tuple[Path, IndexReport]:
    config = make_config(tmp_path, **{"index.chunk_tokens": 48, "index.chunk_overlap": 8})
    documents = write_documents(tmp_path / "documents.jsonl", [topics_document(), guideline(), SCANNED])
    report = run_index(config, documents, tmp_path / "out", embedder=embedder)
    return tmp_path, report


def test_build_index_writes_chunks_index_and_report(built: tuple[Path, IndexReport]) -> None:
    tmp_path, report = built
    out = tmp_path / "out"
    assert (out / "index" / "faiss.index").is_file() and (out / "index" / "ids.json").is_file()
    chunks = read_jsonl(out / "chunks.jsonl", Chunk)
    assert (
        len(chunks) == report.chunks == report.chunk_count > len(TOPICS) + 2
    )  # the long ward section was split
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    assert json.loads((out / "index" / "ids.json").read_text()) == [c.chunk_id for c in chunks]
    assert all(c.token_count <= 48 for c in chunks) and report.max_chunk_tokens <= 48

    on_disk = IndexReport.model_validate_json((out / "index_report.json").read_text())
    assert on_disk.model_dump(exclude={"elapsed_s"}) == report.model_dump(exclude={"elapsed_s"})
    assert report.documents == 3 and report.documents_indexed == 2
    assert [(s.doc_id, s.reason) for s in report.skipped] == [("scanned-1", "no section text to chunk")]
    assert (report.embedder, report.dim, report.store_backend) == ("all-MiniLM-L6-v2", 384, "faiss")
    assert (report.chunk_tokens, report.chunk_overlap) == (48, 8)
    assert (report.cache_hits, report.cache_misses) == (0, report.chunks)


def test_rerun_reads_embeddings_from_the_cache(
    built: tuple[Path, IndexReport], embedder: SentenceTransformerEmbedder
) -> None:
    tmp_path, first = built
    config = make_config(tmp_path, **{"index.chunk_tokens": 48, "index.chunk_overlap": 8})
    again = run_index(config, tmp_path / "documents.jsonl", tmp_path / "again", embedder=embedder)
    assert (again.cache_hits, again.cache_misses) == (first.chunks, 0)
    assert (tmp_path / "again" / "chunks.jsonl").read_text() == (
        tmp_path / "out" / "chunks.jsonl"
    ).read_text()

    # One section changes: only its chunk is embedded again; every other id is unchanged.
    documents = write_documents(
        tmp_path / "changed.jsonl",
        [topics_document(), guideline(" Record the reason in the notes."), SCANNED],
    )
    changed = run_index(config, documents, tmp_path / "changed", embedder=embedder)
    assert (changed.cache_hits, changed.cache_misses) == (first.chunks - 1, 1)
    old_ids = {c.chunk_id for c in read_jsonl(tmp_path / "out" / "chunks.jsonl", Chunk)}
    new_ids = {c.chunk_id for c in read_jsonl(tmp_path / "changed" / "chunks.jsonl", Chunk)}
    assert len(old_ids - new_ids) == len(new_ids - old_ids) == 1


def test_retriever_finds_paraphrased_questions(
    built: tuple[Path, IndexReport], embedder: SentenceTransformerEmbedder
) -> None:
    tmp_path, _ = built
    config = make_config(tmp_path)
    for index_dir in (tmp_path / "out" / "index", tmp_path / "out"):  # the index folder or the stage output
        with load_retriever(config, index_dir, embedder=embedder) as retriever:
            assert isinstance(retriever, Retriever)
            results = retriever.search(TOPICS[4][2], k=3)
            assert all(isinstance(r, ScoredChunk) for r in results) and len(results) == 3
            assert results[0].chunk.section_path == ["Psychiatry notes", "Electroconvulsive therapy"]
            assert results[0].score >= results[1].score >= results[2].score

    retriever = load_retriever(config, tmp_path / "out" / "index", embedder=embedder)
    questions = [TOPICS[2][2], "What is checked before the shift changes on the ward?"]
    many = retriever.search_many(questions, k=2)
    assert many[0][0].chunk.section_path[-1] == "Serotonin syndrome"
    assert many[1][0].chunk.doc_id == "ward-guide-1"
    assert retriever.search_many([], k=3) == [] and retriever.search("anything", k=0) == []
    assert len(retriever) == len(read_jsonl(tmp_path / "out" / "chunks.jsonl", Chunk))
    retriever.close()


def test_retriever_rejects_another_embedder(built: tuple[Path, IndexReport], tmp_path: Path) -> None:
    base, _ = built
    info_path = base / "out" / "index" / "store.json"
    info = json.loads(info_path.read_text())
    info["embedder"] = "some-other-model"
    info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="built with 'some-other-model'"):
        load_retriever(make_config(tmp_path), base / "out" / "index")


def test_bad_documents_file_names_the_line(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    path = tmp_path / "documents.jsonl"
    path.write_text(topics_document().model_dump_json() + "\n" + '{"doc_id": "x"}\n')
    with pytest.raises(InputError, match=r"documents\.jsonl:2: not a valid Document"):
        run_index(make_config(tmp_path), path, tmp_path / "out", embedder=embedder)
    with pytest.raises(InputError, match="not found"):
        run_index(make_config(tmp_path), tmp_path / "missing.jsonl", tmp_path / "out", embedder=embedder)


def test_rebuild_after_a_document_changed_never_retrieves_removed_text(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """FAISS: build, change a document (one section's text replaced), rebuild into the same folder,
    query the removed text: nothing of it comes back, and the index holds exactly the new chunks."""
    config = make_config(tmp_path)
    old = guideline()
    run_index(config, write_documents(tmp_path / "d1.jsonl", [old]), tmp_path / "out", embedder=embedder)
    removed = old.sections[1].text
    new_text = "Seclusion needs a documented review by the nurse in charge every two hours."
    changed = old.model_copy(
        update={"sections": [old.sections[0], old.sections[1].model_copy(update={"text": new_text})]}
    )
    run_index(config, write_documents(tmp_path / "d2.jsonl", [changed]), tmp_path / "out", embedder=embedder)

    chunks = read_jsonl(tmp_path / "out" / "chunks.jsonl", Chunk)
    with load_retriever(config, tmp_path / "out" / "index", embedder=embedder) as retriever:
        assert len(retriever.store) == len(chunks)  # type: ignore[arg-type]
        hits = retriever.search(removed, k=len(chunks))
    assert hits and not any("intramuscular" in hit.chunk.text for hit in hits)
    assert any(new_text in hit.chunk.text for hit in hits)


def test_faiss_prune_keeps_only_the_given_chunks(embedder: SentenceTransformerEmbedder) -> None:
    from ragtune.index.store import FaissStore

    chunks = [
        Chunk(chunk_id=f"c{i}", doc_id="d", section_id="s0", section_path=[], text=t, token_count=3)
        for i, t in enumerate(["lithium levels", "clozapine neutrophils", "sleep hygiene"])
    ]
    store = FaissStore(embedder.name, embedder.dim)
    store.upsert(chunks, embedder.encode([c.text for c in chunks]))
    assert store.prune({"c0", "c2"}, {"d"}) == 1
    assert store.ids == ["c0", "c2"] and store.index.ntotal == 2
    query = embedder.encode(["clozapine neutrophils"])[0]
    assert "c1" not in [cid for cid, _ in store.search(query, k=3)]
    assert [cid for cid, _ in store.search(embedder.encode(["sleep hygiene"])[0], k=1)] == ["c2"]
