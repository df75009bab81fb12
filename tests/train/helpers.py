"""A tiny instruction dataset (written here, nothing downloaded) and small-run settings."""

from __future__ import annotations

from pathlib import Path

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.records import ContextChunk, InstructionItem, Provenance, write_jsonl

FACTS = [
    ("sertraline", "an SSRI used for depression and anxiety disorders"),
    ("lithium", "a mood stabilizer used for bipolar disorder"),
    ("CBT", "a structured talking therapy that changes unhelpful thoughts"),
    ("clozapine", "an antipsychotic kept for treatment-resistant schizophrenia"),
    ("PHQ-9", "a nine-item questionnaire that screens for depression"),
    ("mirtazapine", "an antidepressant that also helps with sleep"),
    ("ECT", "a brain stimulation treatment for severe depression"),
    ("GAD-7", "a seven-item questionnaire that screens for anxiety"),
    ("haloperidol", "a first-generation antipsychotic"),
    ("bupropion", "an antidepressant that also helps people stop smoking"),
    ("DBT", "a therapy that teaches emotion regulation skills"),
    ("quetiapine", "an antipsychotic also used in bipolar depression"),
]


def make_item(name: str, fact: str, system: bool = True) -> InstructionItem:
    question = f"What is {name}?"
    answer = f"According to the guideline, {name} is {fact}."
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if system:
        messages.insert(0, {"role": "system", "content": "Answer from the psychiatry guideline."})
    chunk = ContextChunk(chunk_id=f"c-{name}", sha256="0" * 64, text=f"{name} is {fact}.")
    return InstructionItem(
        item_id=f"item-{name}",
        category="Treatments",
        question_type="factual",
        question=question,
        answer=answer,
        context=[chunk],
        messages=messages,
        provenance=Provenance(
            doc_id="guideline-1",
            section_path=["Treatments"],
            source_chunk_id=chunk.chunk_id,
            context_chunk_ids=[chunk.chunk_id],
            generator_model="test",
            question_template="q@1",
            answer_template="a@1",
        ),
    )


def write_dataset(folder: Path, n_train: int = 8, n_eval: int = 4) -> Path:
    """``n_train`` and ``n_eval`` items in a dataset folder like the synth stage writes."""
    items = [make_item(name, fact) for name, fact in FACTS]
    write_jsonl(folder / "train.jsonl", items[:n_train])
    write_jsonl(folder / "eval.jsonl", items[n_train : n_train + n_eval])
    return folder


def small_config(**train: object) -> RagtuneConfig:
    """SmolLM2, batch 4, 128 tokens, a few steps at a high learning rate, every step logged."""
    settings: dict[str, object] = {
        "max_seq_len": 128,
        "per_device_batch_size": 4,
        "max_steps": 6,
        "learning_rate": 2e-3,
        "logging_steps": 1,
        "eval_steps": 100,
        "save_steps": 100,
        **train,
    }
    return build_config({"train": settings})
