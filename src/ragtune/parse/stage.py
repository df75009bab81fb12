"""The parse stage: a corpus (or explicit files) in, ``documents.jsonl`` and ``parse_report.json`` out.

Every input ends either as a document or as a failed entry of the report with its reason and
kind: a file over ``parse.max_file_mb`` is not even read, and each reader runs in a worker process
under a timeout and a memory cap (:mod:`ragtune.parse.isolation`), so a file that hangs, exhausts
memory or crashes the interpreter costs only itself. Parsed documents are cached by content (file
hash, reader, the config that matters to it and :data:`PARSER_VERSION`), so a rerun parses only new
or changed files; failures are never cached. ``documents.jsonl`` keeps the inputs' (name) order.
When more than ``parse.max_failed_fraction`` of the files failed, the stage writes its outputs and
then fails with an error naming them: a mostly broken corpus is not silently trained on.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from ragtune.core.artifacts import DocumentsDir
from ragtune.core.cache import ContentCache, cache_key
from ragtune.core.config import ParseConfig, RagtuneConfig
from ragtune.core.errors import InputError, RagtuneError
from ragtune.core.records import Document, ParserName, doc_id_for, sha256_hex
from ragtune.core.storage import LocalStorage, Storage, open_storage
from ragtune.parse.dispatch import choose_parser
from ragtune.parse.grobid import GrobidClient
from ragtune.parse.isolation import InProcessReader, IsolatedReader, Limits, ReadFailure, open_reader
from ragtune.parse.report import FailureKind, FileReport, ParseReport
from ragtune.parse.sections import Source

logger = logging.getLogger(__name__)

PARSER_VERSION = "1"  # bump when any reader's output changes, to invalidate cached documents
CACHE_NAMESPACE = "parse"
FAILED_NAMES_SHOWN = 10
_MB = 1024 * 1024


@dataclass(frozen=True)
class _Input:
    name: str  # relative path: the doc_id's basis and the file's name in messages
    source_uri: str
    storage: Storage | None
    key: str
    missing: str | None = None  # why the input cannot even be read


@dataclass
class _Outcome:
    report: FileReport
    document: Document | None = None


def _matches(name: str, patterns: Iterable[str]) -> bool:
    name = name.lower()
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns)


def selected(key: str, include: list[str], exclude: list[str]) -> bool:
    """Include/exclude globs match the file name (case-insensitively); exclude also skips folders."""
    parts = PurePosixPath(key).parts
    if not parts or not _matches(parts[-1], include):
        return False
    return not any(_matches(part, exclude) for part in parts)


def _corpus_inputs(config: RagtuneConfig) -> list[_Input]:
    uri = config.corpus.uri
    storage = open_storage(uri, config.storage)
    if isinstance(storage, LocalStorage) and not storage.root.is_dir():
        raise InputError(f"{uri}: corpus folder not found")
    keys = [k for k in storage.list() if selected(k, config.corpus.include, config.corpus.exclude)]
    return [_Input(key, storage.uri_for(key), storage, key) for key in keys]


def _explicit_inputs(config: RagtuneConfig, sources: list[str]) -> list[_Input]:
    inputs: list[_Input] = []
    for raw in sources:
        path = Path(raw).expanduser()
        if path.is_dir():
            storage = LocalStorage(path)
            for key in storage.list():
                if selected(key, config.corpus.include, config.corpus.exclude):
                    inputs.append(_Input(key, str((path / key).resolve()), storage, key))
        elif path.is_file():
            inputs.append(_Input(path.name, str(path.resolve()), LocalStorage(path.parent), path.name))
        else:
            inputs.append(
                _Input(str(raw), str(path.absolute()), None, "", missing="file or folder not found")
            )
    # Two inputs with the same relative name would share a doc_id: the later ones use their full path.
    seen: set[str] = set()
    unique: list[_Input] = []
    for item in inputs:
        if item.name in seen and item.storage is not None:
            logger.warning(
                "%s: name already used by another source; identified by its full path", item.source_uri
            )
            item = _Input(item.source_uri, item.source_uri, item.storage, item.key)
        seen.add(item.name)
        unique.append(item)
    return unique


def _relevant_config(parser: ParserName, config: ParseConfig) -> dict[str, Any]:
    """The settings that change a reader's output (part of the cache key)."""
    if parser == "grobid":
        return {"consolidate_header": config.grobid_consolidate_header}
    return {}


def _from_cache(cache: ContentCache, key: str, source: Source) -> Document | None:
    document = cache.get_decoded(key, Document.model_validate_json)  # corrupt: a miss, parsed again
    if document is None:
        return None
    # The cache is keyed by content: the same bytes may live under another name now.
    return document.model_copy(update={"doc_id": source.doc_id, "source_uri": source.source_uri})


def _to_cache(cache: ContentCache, key: str, document: Document) -> None:
    try:
        cache.put_bytes(key, document.model_dump_json().encode("utf-8"))
    except Exception as err:
        logger.warning("%s: cannot write parse cache (%s)", document.source_uri, err)


class _FileParser:
    """Turns one input into an outcome; shared by all worker threads."""

    def __init__(
        self,
        config: ParseConfig,
        cache: ContentCache,
        grobid: GrobidClient | None,
        reader: IsolatedReader | InProcessReader,
    ) -> None:
        self.config = config
        self.cache = cache
        self.grobid = grobid
        self.reader = reader

    def _read_bytes(self, item: _Input) -> bytes:
        if item.storage is None:
            raise InputError(item.missing or "cannot be read")
        size = item.storage.size(item.key)
        if size > self.config.max_file_mb * _MB:
            raise ReadFailure(
                "too_large",
                f"{size / _MB:.1f} MB is over parse.max_file_mb = {self.config.max_file_mb:g}; not read",
            )
        return item.storage.read_bytes(item.key)

    def __call__(self, item: _Input) -> _Outcome:
        report = FileReport(source=item.name, source_uri=item.source_uri, status="failed")
        try:
            data = self._read_bytes(item)
            source = Source(item.name, doc_id_for(item.name), item.source_uri, sha256_hex(data))
            report.doc_id, report.sha256 = source.doc_id, source.sha256
            report.parser = choose_parser(item.name, data, use_grobid=self.grobid is not None)
            key = cache_key(
                source.sha256, report.parser, _relevant_config(report.parser, self.config), PARSER_VERSION
            )
            document = _from_cache(self.cache, key, source)
            report.cached = document is not None
            if document is None:
                if report.parser == "grobid" and self.grobid is not None:
                    data = self.grobid.process_fulltext(item.name, data)  # TEI, read like any file
                document = self.reader.read(report.parser, data, source)
            if document.text_length < self.config.min_chars:
                raise InputError(
                    f"empty document ({document.text_length} characters of text, parse.min_chars is {self.config.min_chars})"
                )
            if not report.cached:
                _to_cache(self.cache, key, document)
        except ReadFailure as err:
            return self._failed(report, err.kind, str(err))
        except RagtuneError as err:
            return self._failed(report, "input", str(err))
        except Exception as err:  # a bug outside the readers (storage, cache): that file only
            logger.debug("%s: unexpected error", item.name, exc_info=True)
            return self._failed(report, "error", f"unexpected {type(err).__name__}: {err}")
        report.status = "ok"
        report.sections, report.chars = len(document.sections), document.text_length
        return _Outcome(report, document)

    @staticmethod
    def _failed(report: FileReport, kind: FailureKind, message: str) -> _Outcome:
        report.cached = False
        report.failure = kind
        report.reason = message if message.startswith(f"{report.source}:") else f"{report.source}: {message}"
        logger.warning("failed: %s", report.reason)
        return _Outcome(report)


def _run(items: list[_Input], work: Callable[[_Input], _Outcome], workers: int) -> list[_Outcome]:
    """Apply ``work`` to every item (``workers`` at a time) behind a progress bar, keeping input order."""
    results: list[_Outcome | None] = [None] * len(items)
    with tqdm(total=len(items), desc="parse", unit="file") as bar:
        if workers <= 1:
            for index, item in enumerate(items):
                results[index] = work(item)
                bar.update()
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parse") as pool:
                futures = {pool.submit(work, item): index for index, item in enumerate(items)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update()
    return [r for r in results if r is not None]


def run_parse(config: RagtuneConfig, out_dir: Path, sources: list[str] | None = None) -> ParseReport:
    """Parse the corpus (``config.corpus.uri``) or the given files/folders into ``out_dir``.

    Writes ``documents.jsonl`` (one :class:`~ragtune.core.records.Document` per parsed file, in
    name order) and ``parse_report.json`` (:class:`ParseReport`), and returns the report. A bad
    file is recorded as failed with its reason and never stops the others.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if sources is None:
        inputs, corpus = _corpus_inputs(config), config.corpus.uri
    else:
        inputs, corpus = _explicit_inputs(config, sources), ", ".join(sources)
    if not inputs:
        logger.warning("no input files found in %s", corpus or "(no sources)")
    cache = ContentCache(open_storage(config.cache_uri(), config.storage), CACHE_NAMESPACE)
    grobid = GrobidClient(config.parse) if config.parse.grobid_url else None
    workers = config.parse.grobid_concurrency if grobid else 1
    limits = Limits(config.parse.file_timeout_s, config.parse.file_memory_mb)
    try:
        with open_reader(limits, config.parse.isolation, workers) as reader:
            outcomes = _run(inputs, _FileParser(config.parse, cache, grobid, reader), workers)
    finally:
        if grobid is not None:
            grobid.close()
    artifact = DocumentsDir(out_dir)
    artifact.write([o.document for o in outcomes if o.document is not None])
    report = ParseReport.build(
        corpus, str(artifact.documents_path), PARSER_VERSION, [o.report for o in outcomes]
    )
    report_path = artifact.write_report(report)
    logger.info("%s -> %s", report.summary(), out_dir)
    check_failed_fraction(report, config.parse.max_failed_fraction, report_path)
    return report


def check_failed_fraction(report: ParseReport, max_fraction: float, report_path: Path) -> None:
    """:class:`InputError` naming the failed files when more than ``max_fraction`` of them failed."""
    if report.ok == 0 or report.failed_fraction() <= max_fraction:
        return  # nothing parsed is its own error (exit 1), reported by the caller
    names = [f.source for f in report.failures]
    shown = ", ".join(names[:FAILED_NAMES_SHOWN]) + (
        f" and {len(names) - FAILED_NAMES_SHOWN} more" if len(names) > FAILED_NAMES_SHOWN else ""
    )
    raise InputError(
        f"{report.failed} of {report.total} files failed to parse ({report.failed_fraction():.0%}, over "
        f"parse.max_failed_fraction = {max_fraction:g}): {shown}; reasons in {report_path}"
    )
