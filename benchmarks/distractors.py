"""Are the corpus-fact distractors hard enough? The base model's accuracy on the sample corpus.

The corpus-fact metric asks a model to prefer a sentence of the documents over copies with one
fact-bearing term swapped for one of the same kind. If the *base* model already picks the true
sentence nearly always, the distractors are too easy (a crude swap of terms of mixed kinds gave the
packaged base model 95%) and tuning has nothing to move. This parses and indexes the sample corpus,
takes up to ``--per-chunk`` fact-bearing sentences of every chunk, builds ``--k`` distractors each,
and scores them closed-book with the packaged SmolLM2 under its chat template, the prompt being a
question about the chunk's section ("What does the reference say about <section>?"; the evaluate
stage uses the eval item's own question instead). Prints accuracy and mean margin with 95%
cluster-bootstrap intervals (cluster: the chunk) and chance (1 / (K + 1)).

Usage::

    python benchmarks/distractors.py [--k 3] [--per-chunk 2] [--max-chunks 80]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "examples" / "psychiatry" / "ragtune.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--k", type=int, default=3, help="distractors per statement")
    parser.add_argument("--per-chunk", type=int, default=2, help="statements per chunk")
    parser.add_argument("--max-chunks", type=int, default=80)
    args = parser.parse_args(argv)

    from ragtune.core.artifacts import DocumentsDir, IndexDir
    from ragtune.core.config import load_config
    from ragtune.core.models import load_causal_lm
    from ragtune.core.records import ContextChunk, InstructionItem, Provenance
    from ragtune.evaluate.distractors import CorpusTerms
    from ragtune.evaluate.knowledge import build_probes
    from ragtune.evaluate.likelihood import choices, option_scores
    from ragtune.evaluate.metrics import MetricSettings
    from ragtune.index import run_index
    from ragtune.parse import run_parse

    os.chdir(REPO)  # the config names the corpus relative to the repository
    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="ragtune-distractors-") as tmp:
        run_parse(config, Path(tmp) / "docs")
        run_index(config, DocumentsDir(Path(tmp) / "docs").documents_path, Path(tmp) / "index")
        chunks = IndexDir(Path(tmp) / "index").read()[: args.max_chunks]
    items = [
        InstructionItem(
            item_id=chunk.chunk_id,
            category=chunk.section_path[0] if chunk.section_path else "",
            question_type="definition",
            question=f"What does the reference say about {chunk.section_path[-1] if chunk.section_path else 'this'}?",
            answer="",
            context=[ContextChunk(chunk_id=chunk.chunk_id, sha256="0" * 64, text=chunk.text)],
            messages=[],
            provenance=Provenance(
                doc_id=chunk.doc_id,
                section_path=chunk.section_path,
                source_chunk_id=chunk.chunk_id,
                context_chunk_ids=[chunk.chunk_id],
                generator_model="none",
                question_template="none",
                answer_template="none",
            ),
        )
        for chunk in chunks
    ]
    terms = CorpusTerms.from_texts(chunk.text for chunk in chunks)
    facts, _ = build_probes(items, terms, k=args.k, per_item=args.per_chunk, seed=0)
    model, tokenizer = load_causal_lm("smollm2")
    started = time.perf_counter()
    picked = choices(option_scores(model, tokenizer, [p.question for p in facts.probes], batch_size=8))
    seconds = time.perf_counter() - started
    settings = MetricSettings(
        seed=0,
        bootstrap_samples=2000,
        confidence=0.95,
        max_new_tokens=0,
        bootstrap_unit="source_chunk",
        clusters={item.item_id: item.item_id for item in items},
    )
    ids = [p.item_id for p in facts.probes]
    accuracy = settings.interval([c.correct for c in picked], ids, "accuracy")
    margin = settings.interval([c.margin for c in picked], ids, "margin")
    if accuracy is None or margin is None:
        print("no statement with a distractor in the corpus")
        return 1
    options = sum(len(p.question.options) for p in facts.probes)
    print(f"{len(chunks)} chunks, {len(facts.probes)} statements ({accuracy.n_clusters} chunks), K={args.k}")
    print(f"scoring: {options} options in {seconds:.0f} s")
    print(
        f"base accuracy {accuracy.mean:.3f} [{accuracy.low:.3f}, {accuracy.high:.3f}]; chance {1 / (args.k + 1):.3f}"
    )
    print(f"base mean margin {margin.mean:.4f} [{margin.low:.4f}, {margin.high:.4f}]")
    for probe, choice in list(zip(facts.probes, picked, strict=True))[:5]:
        print(
            f"  {'right' if choice.correct else 'wrong'} {choice.margin:+.3f}: {probe.question.options[0]!r}"
        )
        print(f"      vs {probe.question.options[1]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
