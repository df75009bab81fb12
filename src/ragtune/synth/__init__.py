"""The synthesis stage: questions per table-of-contents category, RAG answers, filters, dataset.

:func:`run_synth` reads ``documents.jsonl`` and a built index and writes ``train.jsonl``,
``eval.jsonl``, their Alpaca twins, ``rejected.jsonl``, a dataset card ``README.md`` and
``synth_report.json``. The pieces: :mod:`.categories` (categories and question slots),
:mod:`.templates` (versioned Jinja2 prompts), :mod:`.prompts` (requests and reply schemas),
:mod:`.filters`, :mod:`.split`, :mod:`.dataset` and :mod:`.stage` (the steps in order).
"""

from ragtune.synth.report import RejectedItem, SynthReport
from ragtune.synth.stage import generator_endpoint, run_synth

__all__ = ["RejectedItem", "SynthReport", "generator_endpoint", "run_synth"]
