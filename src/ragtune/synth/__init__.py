"""The synthesis stage: questions per table-of-contents category, RAG answers, filters, dataset.

:func:`run_synth` reads ``documents.jsonl`` and a built index and writes ``train.jsonl``,
``eval.jsonl``, their Alpaca twins, ``rejected.jsonl``, a dataset card ``README.md`` and
``synth_report.json``. The pieces: :mod:`.categories` (categories and question slots),
:mod:`.prompts` (versioned Jinja2 prompts, requests and reply schemas),
:mod:`.filters`, :mod:`.split`, :mod:`.dataset` and :mod:`.stage` (the steps in order).
After the stage, :mod:`.audit` renders a page for a person to read and mark sampled items beside
their chunks, and :mod:`.audit_marks` turns the marks into error rates of the filters.
"""

from ragtune.core.reports.synth import SynthReport
from ragtune.synth.report import RejectedItem
from ragtune.synth.stage import generator_endpoint, run_synth

__all__ = ["RejectedItem", "SynthReport", "generator_endpoint", "run_synth"]
