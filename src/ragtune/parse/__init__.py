"""The parse stage: domain documents (PDF, GROBID TEI, Markdown, HTML, text) → ``documents.jsonl``.

``run_parse(config, out_dir, sources=None) -> ParseReport`` is the stage function. Each reader
is a module with one job (``tei``, ``pdf``, ``markdown``, ``html``, ``text``; ``grobid`` is the
GROBID client whose TEI goes through ``tei``); ``dispatch`` picks one per file and ``stage`` runs
them over the corpus with a content-hash cache.
"""

from ragtune.parse.report import FileReport, ParseReport
from ragtune.parse.stage import DOCUMENTS_FILE, PARSER_VERSION, REPORT_FILE, run_parse

__all__ = ["DOCUMENTS_FILE", "PARSER_VERSION", "REPORT_FILE", "FileReport", "ParseReport", "run_parse"]
