"""Small builders shared by the evaluate tests."""

from __future__ import annotations

from ragtune.core.records import ContextChunk, InstructionItem, Provenance


def make_item(item_id: str, category: str, question: str, answer: str, context: list[str]) -> InstructionItem:
    return InstructionItem(
        item_id=item_id,
        category=category,
        question_type="definition",
        question=question,
        answer=answer,
        context=[
            ContextChunk(chunk_id=f"{item_id}-c{i}", sha256="0" * 64, text=t) for i, t in enumerate(context)
        ],
        messages=[
            {"role": "system", "content": "You answer questions about mental health."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
        provenance=Provenance(
            doc_id="doc-1",
            section_path=[category],
            source_chunk_id=f"{item_id}-c0",
            context_chunk_ids=[f"{item_id}-c{i}" for i in range(len(context))],
            generator_model="test",
            question_template="question@1",
            answer_template="answer@1",
        ),
    )


ITEMS = [
    make_item(
        "item-panic",
        "Anxiety Disorders",
        "What is a panic attack?",
        "A sudden surge of intense fear that peaks within minutes, with a pounding heart and breathlessness.",
        [
            "A panic attack is a sudden surge of intense fear that peaks within minutes, with a pounding heart."
        ],
    ),
    make_item(
        "item-insomnia",
        "Sleep-Wake Disorders",
        "What is insomnia?",
        "Difficulty falling asleep, staying asleep or waking too early, with daytime tiredness.",
        [
            "Insomnia is difficulty falling asleep, staying asleep or waking too early despite the opportunity."
        ],
    ),
]
