"""``parse_report.json``: what happened to every input file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ragtune.core.records import ParserName

EXIT_OK = 0
EXIT_NOTHING_PARSED = 1
EXIT_PARTIAL = 3

FailureKind = Literal["input", "too_large", "timeout", "memory", "crashed", "error"]
"""Why a file failed: unusable input, over ``parse.max_file_mb``, over the reader's wall-clock
timeout, over its memory cap, a crashed reader process, or an unexpected error in a reader."""


class FileReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="Path of the file inside the corpus (or as given).")
    source_uri: str
    status: Literal["ok", "failed"]
    parser: ParserName | None = Field(None, description="Reader chosen for the file (None if none fits).")
    doc_id: str | None = None
    sha256: str | None = None
    sections: int = 0
    chars: int = Field(0, description="Characters of section text extracted.")
    cached: bool = Field(False, description="Taken from the parse cache instead of parsed again.")
    reason: str | None = Field(None, description="Why the file failed; names the file.")
    failure: FailureKind | None = Field(
        None, description="How the file failed: input, too_large, timeout, memory, crashed or error."
    )


class ParseReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    corpus: str = Field(description="The corpus URI, or the explicit sources joined by ', '.")
    documents_path: str
    parser_version: str
    files: list[FileReport]
    total: int
    ok: int
    failed: int
    cache_hits: int
    partial: bool = Field(description="Some files parsed and some failed.")

    @classmethod
    def build(
        cls, corpus: str, documents_path: str, parser_version: str, files: list[FileReport]
    ) -> ParseReport:
        ok = sum(1 for f in files if f.status == "ok")
        return cls(
            corpus=corpus,
            documents_path=documents_path,
            parser_version=parser_version,
            files=files,
            total=len(files),
            ok=ok,
            failed=len(files) - ok,
            cache_hits=sum(1 for f in files if f.cached),
            partial=0 < ok < len(files),
        )

    @property
    def failures(self) -> list[FileReport]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def parsed_count(self) -> int:
        return self.ok

    @property
    def failed_count(self) -> int:
        return self.failed

    def failed_fraction(self) -> float:
        return self.failed / self.total if self.total else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every file parsed, 3 when only some did, 1 when none did (or there were none)."""
        if self.ok == 0:
            return EXIT_NOTHING_PARSED
        return EXIT_PARTIAL if self.partial else EXIT_OK

    def summary(self) -> str:
        text = f"parsed {self.ok}/{self.total} file(s), {self.failed} failed, {self.cache_hits} from cache"
        return text + (" (partial)" if self.partial else "")
