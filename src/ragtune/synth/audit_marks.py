"""The marks of an audit read back: how often the filters kept a wrong item or rejected a good one.

A marks file is CSV with the header ``item_id,mark,note`` — what the audit page downloads, or what
a person writes by hand: one row per item, ``mark`` ``right`` or ``wrong`` (blank: not marked yet),
``note`` free text. Every id must be one of the dataset's (a kept item's ``item_id`` or a rejected
slot's ``slot_id``); a bad row stops the read with the file and line named, since a count built on
a mistyped id would be quietly wrong.

The report gives each share with its sample size and a 95% Wilson interval: the share of wrong
items among the kept ones marked, and the share of good (right) items among the rejected ones
marked, in all and per filter (``stage/reason``).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from ragtune.core.errors import InputError
from ragtune.core.fsutil import atomic_write_text
from ragtune.core.stats import wilson_interval
from ragtune.synth.audit import read_dataset

FIELDS = ("item_id", "mark", "note")
MARKS = ("right", "wrong")
CONFIDENCE = 0.95


class Mark(BaseModel):
    item_id: str
    mark: Literal["right", "wrong"]
    note: str = ""
    line: int


def read_marks(path: Path, known: Mapping[str, object]) -> tuple[list[Mark], int]:
    """The marked rows of ``path`` and the number of rows left blank; ``known``: the dataset's ids."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as err:
        raise InputError(f"{path}: cannot read the marks ({err.strerror or err})") from None
    marks: list[Mark] = []
    first_line: dict[str, int] = {}
    blank = 0
    with handle:
        reader = csv.DictReader(handle)
        missing = [name for name in FIELDS[:2] if name not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"{path}:1: the header must be {','.join(FIELDS)} (missing {', '.join(missing)})"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            item_id = (row.get("item_id") or "").strip()
            mark = (row.get("mark") or "").strip().lower()
            if item_id not in known:
                raise InputError(f"{where}: unknown item id {item_id!r} (not in the audited dataset)")
            if item_id in first_line:
                raise InputError(
                    f"{where}: item {item_id} is marked again (first on line {first_line[item_id]})"
                )
            first_line[item_id] = reader.line_num
            if not mark:
                blank += 1
                continue
            if mark not in MARKS:
                raise InputError(
                    f"{where}: mark must be 'right' or 'wrong' (or blank), not {row.get('mark')!r}"
                )
            note = (row.get("note") or "").strip()
            marks.append(
                Mark.model_validate({"item_id": item_id, "mark": mark, "note": note, "line": reader.line_num})
            )
    return marks, blank


class Share(BaseModel):
    """``count`` of ``n`` marked, with the share and its 95% Wilson interval (``None`` when n is 0)."""

    n: int
    count: int
    share: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def of(cls, count: int, n: int) -> Share:
        if n == 0:
            return cls(n=0, count=0, share=None, ci_low=None, ci_high=None)
        low, high = wilson_interval(count, n)
        return cls(n=n, count=count, share=round(count / n, 4), ci_low=round(low, 4), ci_high=round(high, 4))

    def __str__(self) -> str:
        if self.share is None:
            return "n = 0"
        return f"{self.count} of {self.n} ({self.share:.0%}, 95% CI [{self.ci_low:.0%}, {self.ci_high:.0%}])"


class AuditReport(BaseModel):
    """What the marks say about the filters of one synthesized dataset."""

    dataset: str
    marks_file: str
    generated: int
    kept: int
    kept_share: float
    marked: int
    unmarked: int
    kept_wrong: Share
    rejected_good: Share
    rejected_good_by_filter: dict[str, Share]
    confidence: float = CONFIDENCE
    interval: str = "wilson"


def tally(marks: Sequence[Mark], filters: Mapping[str, str | None]) -> tuple[Share, Share, dict[str, Share]]:
    """Wrong among kept; good among rejected, in all and per filter (``filters``: id -> filter or None)."""
    kept = [m for m in marks if filters[m.item_id] is None]
    rejected = [m for m in marks if filters[m.item_id] is not None]
    by_filter: dict[str, list[Mark]] = {}
    for mark in rejected:
        by_filter.setdefault(str(filters[mark.item_id]), []).append(mark)
    return (
        Share.of(sum(m.mark == "wrong" for m in kept), len(kept)),
        Share.of(sum(m.mark == "right" for m in rejected), len(rejected)),
        {
            label: Share.of(sum(m.mark == "right" for m in group), len(group))
            for label, group in sorted(by_filter.items(), key=lambda pair: (-len(pair[1]), pair[0]))
        },
    )


def score_audit(dataset_dir: Path, marks_path: Path, out: Path) -> AuditReport:
    """Read ``marks_path`` against ``dataset_dir``, write the report as JSON to ``out``, return it."""
    source = read_dataset(dataset_dir)
    filters = source.audit_ids()
    marks, blank = read_marks(marks_path, filters)
    kept_wrong, rejected_good, by_filter = tally(marks, filters)
    report = AuditReport(
        dataset=str(dataset_dir),
        marks_file=str(marks_path),
        generated=source.report.generated,
        kept=source.report.kept,
        kept_share=source.report.kept_share,
        marked=len(marks),
        unmarked=blank,
        kept_wrong=kept_wrong,
        rejected_good=rejected_good,
        rejected_good_by_filter=by_filter,
    )
    atomic_write_text(out, report.model_dump_json(indent=2) + "\n")
    return report
