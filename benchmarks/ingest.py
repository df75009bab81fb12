"""Ingest throughput against the bare libraries underneath it.

* ``parse_ratio`` — our PDF reading (``ragtune.parse.run_parse`` on the PDFs: layout-aware
  lines, headings, sections, ``documents.jsonl``) in pages/s, divided by raw pypdf
  ``page.extract_text()`` pages/s on the same files.
* ``isolation_overhead`` — ``run_parse`` over the whole sample corpus with every file read
  in a worker process (``parse.isolation: process``, the default: timeout and memory cap)
  against the same stage reading in its own process (``parse.isolation: none``), as
  the median over back-to-back pairs of ``isolated / in-process - 1`` with a 95% bootstrap
  interval and the number of pairs; the goal is at most 0.10. Both sides include the cache writes
  and the outputs; the isolated side includes forking its worker.
* ``embed_ratio`` — our embed + index path (``embed_cached`` through an empty embedding cache, then
  a FAISS upsert) in chunks/s, divided by a bare ``SentenceTransformer.encode`` of the same chunk
  texts with the same batch size, on the same loaded model.

Caches are always fresh temporary folders, so nothing is skipped. Each measurement is repeated
(alternating ours and bare) until it has run ``--repeat`` times and at least ``--min-seconds``;
the median time counts. The PDFs are those of the sample corpus (a few are generated with fpdf2
if there are none). Prints a table, then as its last line ``key=value`` pairs.

Usage::

    python benchmarks/ingest.py [--corpus examples/psychiatry/corpus] [--repeat 3] [--min-seconds 2]
                                [--isolation-only]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the table

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO / "examples" / "psychiatry" / "corpus"


def timed_runs(runs: list[Callable[[], object]], repeat: int, min_seconds: float) -> list[list[float]]:
    """Wall times of each callable, run in alternation (so drift hits all alike)."""
    times: list[list[float]] = [[] for _ in runs]
    started = time.perf_counter()
    while len(times[0]) < repeat or time.perf_counter() - started < min_seconds * len(runs):
        for fn, bucket in zip(runs, times, strict=True):
            t0 = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t0)
    return times


def median_seconds(runs: list[Callable[[], object]], repeat: int, min_seconds: float) -> list[float]:
    """Median wall time of each callable, run in alternation."""
    return [statistics.median(bucket) for bucket in timed_runs(runs, repeat, min_seconds)]


def paired_overhead(ours: list[float], base: list[float], samples: int = 2000) -> tuple[float, float, float]:
    """Median of the per-pair ``ours/base - 1`` (the pairs ran back to back) with a 95% bootstrap
    interval of that median."""
    ratios = [a / b - 1 for a, b in zip(ours, base, strict=True)]
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(samples))
    return statistics.median(ratios), medians[int(0.025 * samples)], medians[int(0.975 * samples) - 1]


def sample_pdfs(corpus: Path, workdir: Path) -> list[Path]:
    """The corpus PDFs, or (when there are none yet) three generated multi-page ones."""
    found = sorted(corpus.rglob("*.pdf")) if corpus.is_dir() else []
    if found:
        return found
    from fpdf import FPDF

    generated = []
    for number in range(3):
        pdf = FPDF()
        pdf.set_font("Helvetica", size=11)
        for chapter in range(3):
            pdf.add_page()
            pdf.set_font("Helvetica", style="B", size=16)
            pdf.cell(0, 10, f"Chapter {chapter + 1} of sample {number + 1}", new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=11)
            for paragraph in range(6):
                pdf.multi_cell(
                    0,
                    6,
                    f"Paragraph {paragraph + 1}. Clinicians review mood, sleep, appetite and risk at every "
                    "visit, record the findings, and adjust the treatment plan with the patient. " * 3,
                )
                pdf.ln(3)
        path = workdir / f"sample-{number + 1}.pdf"
        pdf.output(str(path))
        generated.append(path)
    return generated


def print_table(rows: list[tuple[str, str, float, float, str]]) -> None:
    print(f"{'measurement':<38}{'input':<22}{'median s':>10}{'rate':>12}  unit")
    for name, what, seconds, rate, unit in rows:
        print(f"{name:<38}{what:<22}{seconds:>10.3f}{rate:>12.1f}  {unit}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="sample corpus folder")
    parser.add_argument("--repeat", type=int, default=3, help="minimum runs of each measurement")
    parser.add_argument(
        "--min-seconds", type=float, default=2.0, help="minimum time spent on each measurement"
    )
    parser.add_argument(
        "--isolation-only", action="store_true", help="only the parse isolation overhead (fast)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    from pypdf import PdfReader

    from ragtune.core.artifacts import DocumentsDir
    from ragtune.core.cache import ContentCache
    from ragtune.core.config import build_config
    from ragtune.core.embedding import SentenceTransformerEmbedder, embed_cached
    from ragtune.core.storage import LocalStorage
    from ragtune.index.stage import chunk_documents
    from ragtune.index.store import FaissStore
    from ragtune.parse import run_parse

    with tempfile.TemporaryDirectory(prefix="ragtune-bench-") as tmp:
        work = Path(tmp)
        config = build_config({"run": {"root": str(work / "runs")}, "corpus": {"uri": str(args.corpus)}})
        counter = iter(range(10**9))

        def fresh(name: str) -> Path:
            return work / f"{name}-{next(counter)}"

        # --- parse isolation: worker processes vs the stage's own process, whole corpus ---------
        def corpus_parse(isolation: str) -> Callable[[], None]:
            run_config = config.model_copy(
                update={"parse": config.parse.model_copy(update={"isolation": isolation})}
            )

            def run() -> None:
                fresh_config = run_config.model_copy(
                    update={"cache": config.cache.model_copy(update={"uri": str(fresh("cache"))})}
                )
                report = run_parse(fresh_config, fresh("isolation"))
                if report.failed:
                    raise SystemExit(f"parse failed: {[f.reason for f in report.failures]}")

            return run

        isolated, in_process = corpus_parse("process"), corpus_parse("none")
        isolated()  # warm-up
        in_process()
        files = len(list(args.corpus.rglob("*.*")))
        isolated_runs, in_process_runs = timed_runs([isolated, in_process], args.repeat, args.min_seconds)
        isolated_s, in_process_s = statistics.median(isolated_runs), statistics.median(in_process_runs)
        overhead, overhead_lo, overhead_hi = paired_overhead(isolated_runs, in_process_runs)
        isolation_rows = [
            ("parse corpus (isolated workers)", f"{files} files", isolated_s, files / isolated_s, "files/s"),
            ("parse corpus (in-process)", f"{files} files", in_process_s, files / in_process_s, "files/s"),
        ]
        isolation_line = (
            f"isolation_overhead={overhead:.3f} isolation_overhead_ci95={overhead_lo:.3f},{overhead_hi:.3f} "
            f"isolation_pairs={len(isolated_runs)} isolation_files={files} "
            f"isolated_s={isolated_s:.4f} in_process_s={in_process_s:.4f}"
        )
        if args.isolation_only:
            print_table(isolation_rows)
            print(isolation_line)
            return 0

        # --- parse: our PDF reader vs raw pypdf text extraction ---------------------------------
        pdfs = sample_pdfs(args.corpus, work)
        pages = sum(len(PdfReader(path).pages) for path in pdfs)

        def ours_parse() -> None:
            run_config = config.model_copy(
                update={"cache": config.cache.model_copy(update={"uri": str(fresh("cache"))})}
            )
            report = run_parse(run_config, fresh("parsed"), [str(p) for p in pdfs])
            if report.failed:
                raise SystemExit(f"parse failed: {[f.reason for f in report.failures]}")

        def bare_parse() -> None:
            for path in pdfs:
                for page in PdfReader(io.BytesIO(path.read_bytes())).pages:
                    page.extract_text()

        ours_parse()  # warm-up: imports, font tables
        bare_parse()
        parse_ours_s, parse_bare_s = median_seconds([ours_parse, bare_parse], args.repeat, args.min_seconds)

        # --- embed + index: our path vs bare SentenceTransformer.encode -------------------------
        parsed = fresh("corpus")
        report = run_parse(
            config.model_copy(update={"cache": config.cache.model_copy(update={"uri": str(fresh("cache"))})}),
            parsed,
        )
        documents = DocumentsDir(parsed).read()
        chunks, _, _ = chunk_documents(config, documents)
        texts = [chunk.text for chunk in chunks]
        if not texts:
            raise SystemExit(f"no chunks from {args.corpus} ({report.summary()})")
        embedder = SentenceTransformerEmbedder(config.index.embedder.model, config.index.embedder.batch_size)
        model = embedder.model

        def ours_embed() -> None:
            vectors = embed_cached(
                embedder, texts, ContentCache(LocalStorage(fresh("cache")), "embeddings"), progress=False
            )
            FaissStore(embedder.name, embedder.dim).upsert(chunks, vectors)

        def bare_embed() -> None:
            model.encode(texts, batch_size=embedder.batch_size)

        model.encode(texts[:8], batch_size=embedder.batch_size)  # warm-up
        embed_ours_s, embed_bare_s = median_seconds([ours_embed, bare_embed], args.repeat, args.min_seconds)

    # Same units on both sides, so a ratio of rates is the inverse ratio of times.
    parse_ratio = parse_bare_s / parse_ours_s
    embed_ratio = embed_bare_s / embed_ours_s
    rows = [
        (
            "parse (ragtune PDF reader)",
            f"{len(pdfs)} PDFs, {pages} pages",
            parse_ours_s,
            pages / parse_ours_s,
            "pages/s",
        ),
        (
            "parse (pypdf extract_text)",
            f"{len(pdfs)} PDFs, {pages} pages",
            parse_bare_s,
            pages / parse_bare_s,
            "pages/s",
        ),
        *isolation_rows,
        (
            "embed+index (ragtune)",
            f"{len(texts)} chunks",
            embed_ours_s,
            len(texts) / embed_ours_s,
            "chunks/s",
        ),
        (
            "encode (bare sentence-transformers)",
            f"{len(texts)} chunks",
            embed_bare_s,
            len(texts) / embed_bare_s,
            "chunks/s",
        ),
    ]
    print_table(rows)
    print(
        f"parse_ratio={parse_ratio:.3f} embed_ratio={embed_ratio:.3f} pdfs={len(pdfs)} pages={pages} "
        f"chunks={len(texts)} parse_ours_pages_per_s={pages / parse_ours_s:.1f} "
        f"parse_pypdf_pages_per_s={pages / parse_bare_s:.1f} embed_ours_chunks_per_s={len(texts) / embed_ours_s:.1f} "
        f"embed_bare_chunks_per_s={len(texts) / embed_bare_s:.1f} {isolation_line}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
