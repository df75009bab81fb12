"""One question slot on its way through the synthesis stage, as the steps and the report see it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragtune.core.records import Chunk, SentenceSupport
from ragtune.synth.categories import Slot
from ragtune.synth.report import RejectedItem


@dataclass
class Candidate:
    """One slot on its way through the stage."""

    slot: Slot
    question: str = ""
    answer: str = ""
    contexts: list[Chunk] = field(default_factory=list)
    citations: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    attempt: int = 0  # 1 on the retry
    retry_of: str | None = None  # "stage/reason" of the first attempt's rejection
    support: list[SentenceSupport] | None = None  # the faithfulness check's verdicts, once checked
    rejected: RejectedItem | None = None

    @property
    def alive(self) -> bool:
        return self.rejected is None

    @property
    def cited(self) -> list[Chunk]:
        """The context chunks the answer cites; all of them when it cites none."""
        cited = [c for c in self.contexts if c.chunk_id in self.citations]
        return cited or list(self.contexts)

    @property
    def faithful(self) -> bool | None:
        """Whether every answer sentence held (None: not checked)."""
        return None if self.support is None else all(s.supported for s in self.support)
