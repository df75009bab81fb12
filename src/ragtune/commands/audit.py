"""``ragtune audit``: the page a person reads to check a synthesized dataset, and the marks read back.

The work is :mod:`ragtune.synth.audit` (sample, resolve the chunks, render) and
:mod:`ragtune.synth.audit_marks` (read the marks, count); this module only turns options into
those calls and prints the outcome. :mod:`ragtune.cli` registers :func:`audit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragtune.commands import load_cli_config
from ragtune.core.errors import RagtuneError

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (run.seed draws the sample).", show_default=False),
]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key (repeatable).", show_default=False)
]

DEFAULT_INDEX = "ingest"  # where `ragtune synthesize` parses and indexes the corpus when given no --index


def audit(
    dataset: Annotated[
        Path, typer.Argument(help="Folder written by `ragtune synthesize`.", show_default=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The page to write (FILE.html); with --marks, the report (FILE.json, default: beside the marks).",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[int, typer.Option("--sample", "-n", min=0, help="Kept items to show.")] = 40,
    rejected: Annotated[
        int, typer.Option("--rejected", min=0, help="Rejected slots to show, spread over the filters.")
    ] = 10,
    marks: Annotated[
        Path | None,
        typer.Option(
            "--marks", help="Read this marks CSV (item_id,mark,note) back and report.", show_default=False
        ),
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            help=f"Folder written by `ragtune index` (default: DATASET/{DEFAULT_INDEX}).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Write an audit page of N random kept items (and some rejected) beside their chunks, or score its marks."""
    if marks is not None:
        _score(dataset, marks, out or marks.with_suffix(".json"))
    elif out is None:
        raise RagtuneError("audit: --out FILE.html is required to write the page (or give --marks FILE.csv)")
    else:
        _page(dataset, out, sample, rejected, index or dataset / DEFAULT_INDEX, config, set_ or [])


def _page(
    dataset: Path, out: Path, sample: int, rejected: int, index: Path, config: Path | None, flags: list[str]
) -> None:
    from ragtune.core.artifacts import IndexDir
    from ragtune.synth.audit import write_audit_page

    if not IndexDir(index).chunks_path.is_file():
        raise RagtuneError(
            f"{IndexDir(index).chunks_path}: not found; the audit shows each item's chunks, so --index must "
            "name the folder `ragtune index` wrote for this dataset"
        )
    cfg = load_cli_config(config, flags)
    page = write_audit_page(
        dataset,
        index,
        out,
        n_kept=sample,
        n_rejected=rejected,
        seed=cfg.run.seed,
        templates_dir=cfg.synth.templates_dir,
    )
    support = f"{page.with_support} with support data" if page.with_support else "no support data"
    typer.echo(f"{page.kept} kept and {page.rejected} rejected items ({support}) -> {out}")


def _score(dataset: Path, marks: Path, out: Path) -> None:
    from ragtune.synth.audit_marks import score_audit

    report = score_audit(dataset, marks, out)
    typer.echo(
        f"{report.marked} marked ({report.unmarked} blank) in {marks}; dataset kept {report.kept} of "
        f"{report.generated} slots ({report.kept_share:.0%})"
    )
    typer.echo(f"wrong among kept: {report.kept_wrong}")
    typer.echo(f"good among rejected: {report.rejected_good}")
    for label, share in report.rejected_good_by_filter.items():
        typer.echo(f"  {label}: {share}")
    typer.echo(f"report -> {out}")
