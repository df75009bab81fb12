"""The parse stage: domain documents (PDF, GROBID TEI, Markdown, HTML, text) → ``documents.jsonl``.

``run_parse(config, out_dir, sources=None) -> ParseReport`` is the stage function. Each reader
is a module with one job (``tei``, ``pdf``, ``markdown``, ``html``, ``text``; ``grobid`` is the
GROBID client whose TEI goes through ``tei``); ``dispatch`` picks one per file and ``stage`` runs
them over the corpus with a content-hash cache.
"""

from ragtune.parse.report import FileReport, ParseReport
from ragtune.parse.stage import PARSER_VERSION, run_parse

__all__ = ["PARSER_VERSION", "FileReport", "ParseReport", "run_parse"]
