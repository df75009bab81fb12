"""The ``ragtune`` command: run the whole graph locally, or one stage on its own.

Errors a user can act on print as one line naming the file, record or key (exit 1); ``--debug``
shows the traceback instead. ``ragtune parse`` exits 3 when some files failed but others parsed.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from typer.core import TyperGroup

from ragtune.commands import audit as audit_commands
from ragtune.commands import load_cli_config
from ragtune.commands import serve as serve_commands
from ragtune.core.artifacts import DocumentsDir, IndexDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import RagtuneError

EXIT_PARTIAL = 3

console = Console(stderr=True)
_state: dict[str, bool] = {"debug": False}


class _OneLineErrors(TyperGroup):
    """Every command prints a :class:`RagtuneError` as one line and exits 1 (``--debug``: traceback).

    Doing it here rather than in :func:`main` means ``CliRunner`` tests see exactly what users see.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RagtuneError as err:
            if _state["debug"]:
                raise
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="ragtune",
    cls=_OneLineErrors,
    help="Documents in, a RAG-grounded instruction dataset, a judged LoRA adapter and an MLflow model version out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (see examples/psychiatry/ragtune.yaml).", show_default=False
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config key: --set index.chunk_tokens=128 (repeatable).", show_default=False
    ),
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
RunnerChoice = Literal["subprocess", "docker"]  # pipelines.local_run.Runner


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=debug)],
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock", "sentence_transformers", "faiss"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _config(path: Path | None, flags: list[str] | None, extra: dict[str, Any] | None = None) -> RagtuneConfig:
    """The config every command uses: file, env, ``--set`` flags (then ``extra``), grants exported."""
    return load_cli_config(path, flags, extra)


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


@app.command()
def run(
    config: ConfigOption = None,
    set_: SetOption = None,
    corpus: Annotated[
        str | None,
        typer.Option(help="Corpus folder or s3:// URI (sets corpus.uri).", show_default=False),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Also show every task's full log live (always in <run>/logs/)."),
    ] = False,
    runner: Annotated[
        RunnerChoice,
        typer.Option(
            help="subprocess: tasks in this Python; docker: each task in the CPU image ($RAGTUNE_IMAGE, "
            "`make images`) as uid 10001 with a read-only root, like a pod."
        ),
    ] = "subprocess",
) -> None:
    """Run the whole pipeline locally through KFP's local runner; outputs go under run.root."""
    from pipelines.local_run import run_locally

    loaded = _config(config, set_, {"corpus.uri": corpus} if corpus else None)
    result = run_locally(loaded, verbose=verbose, console=console.file, runner=runner)
    console.print(
        f"[bold green]pipeline finished[/] in {result.seconds:.0f}s; outputs in [bold]{result.run_dir}[/]",
        soft_wrap=True,
    )
    table = Table(box=None, show_header=True, pad_edge=False, header_style="bold")
    table.add_column("output (under the run folder)", no_wrap=True)
    table.add_column("holds", overflow="fold")
    for name, path in result.outputs.items():
        table.add_row(name, _contents(path))
    if result.logs_dir is not None:
        table.add_row(str(result.logs_dir.relative_to(result.run_dir)), "<task>.log: each task's full output")
    console.print(table)
    from pipelines.summary import summary_for_run

    console.print("\n" + summary_for_run(result.run_dir), soft_wrap=True, highlight=False, markup=False)
    _print_where_to_look(result.run_dir)


def _contents(path: Path, shown: int = 5) -> str:
    """A folder's entries, first few by name (folders with a slash); a file's own name."""
    if not path.is_dir():
        return path.name
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if not p.name.startswith("."))
    return ", ".join(names[:shown]) + (f", … ({len(names) - shown} more)" if len(names) > shown else "")


def _print_where_to_look(run_dir: Path) -> None:
    """Where to look next: the MLflow store of the decision, the HTML evaluation report.

    The decision itself, with its reason, is in the evidence summary printed just before.
    """
    from pipelines.local_run import evaluation_report, read_decision

    decision = read_decision(run_dir)
    if decision is not None:
        console.print(
            f"MLflow: {decision.mlflow.tracking_uri} (experiment {decision.mlflow.experiment})",
            soft_wrap=True,
            highlight=False,
        )
    report = evaluation_report(run_dir)
    if report.is_file():
        console.print(f"evaluation report: {report}", soft_wrap=True, highlight=False)


@app.command()
def parse(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to parse.", show_default=False)],
    out: OutOption,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Parse documents into OUT/documents.jsonl and OUT/parse_report.json."""
    from ragtune.parse import run_parse

    for path in paths:
        if not path.exists():
            raise RagtuneError(f"{path}: no such file or folder")
    report = run_parse(_config(config, set_), out, sources=[str(p) for p in paths])
    console.print(
        f"parsed {report.parsed_count} document(s), {report.failed_count} failed -> {DocumentsDir(out).documents_path}"
    )
    for failure in report.failures:
        console.print(f"  [red]failed[/] {failure.source}: {failure.reason}")
    if report.parsed_count == 0:
        raise RagtuneError(f"no document could be parsed; see {DocumentsDir(out).report_path}")
    if report.failed_count:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def index(
    documents: Annotated[
        Path, typer.Argument(help="documents.jsonl written by `ragtune parse`.", show_default=False)
    ],
    out: OutOption,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Chunk, embed and index documents into OUT (chunks.jsonl, index/, index_report.json)."""
    from ragtune.index import run_index

    report = run_index(_config(config, set_), documents, out)
    _print_json(report.model_dump())


@app.command()
def synthesize(
    out: OutOption,
    config: ConfigOption = None,
    set_: SetOption = None,
    index_dir: Annotated[
        Path | None,
        typer.Option(
            "--index",
            help="Output folder of `ragtune index` (default: parse and index the corpus into OUT/ingest).",
        ),
    ] = None,
) -> None:
    """Generate the instruction dataset into OUT (train/eval/rejected JSONL, README.md card)."""
    from ragtune.index import run_index
    from ragtune.parse import run_parse
    from ragtune.synth import run_synth as run_synthesis

    cfg = _config(config, set_)
    if index_dir is None:
        index_dir = out / "ingest"
        run_parse(cfg, index_dir)
        run_index(cfg, DocumentsDir(index_dir).documents_path, index_dir)
    documents = DocumentsDir(index_dir).documents_path
    if not documents.is_file():
        raise RagtuneError(
            f"{documents}: missing; --index must be a folder written by `ragtune parse` and `ragtune index`"
        )
    report = run_synthesis(cfg, documents, IndexDir(index_dir).store_dir, out)
    console.print(
        f"{report.generated} slots -> {report.train} train, {report.eval} eval, {report.rejected} rejected; "
        f"LLM cache {report.cache_hits} hits, {report.cache_misses} misses -> {out}"
    )


@app.command()
def train(
    dataset: Annotated[
        Path, typer.Argument(help="Folder written by `ragtune synthesize`.", show_default=False)
    ],
    out: OutOption,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """LoRA-tune train.base_model on DATASET into OUT (adapter/, metrics.json, checkpoints/)."""
    from ragtune.train import run_train as run_training

    report = run_training(_config(config, set_), dataset, out)
    console.print(
        f"trained {report.global_step} steps, eval loss {report.eval_loss_before} -> {report.eval_loss_after}; adapter in {report.adapter_dir}"
    )


@app.command()
def evaluate(
    dataset: Annotated[
        Path, typer.Argument(help="Folder written by `ragtune synthesize`.", show_default=False)
    ],
    out: OutOption,
    adapter: Annotated[
        Path | None, typer.Option(help="adapter/ folder written by `ragtune train` (omit: base only).")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Judge base vs tuned answers on DATASET's eval split into OUT (scores, metrics.json, report.html)."""
    from ragtune.evaluate import run_evaluate as run_evaluation

    report = run_evaluation(_config(config, set_), dataset, adapter, out)
    metrics = report.metrics
    console.print(
        f"judge sums {metrics.sums}; tuned - base {metrics.delta_mean} [{metrics.delta_ci_low}, {metrics.delta_ci_high}]"
    )
    console.print(f"report: {report.report_path}")


@app.command()
def promote(
    version: Annotated[int, typer.Option("--version", help="Model version to promote.", show_default=False)],
    force: Annotated[
        bool, typer.Option("--force", help="Set champion whatever the numbers say (manual override).")
    ] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Set `champion` on a registered version if its recorded eval beats the champion (or --force)."""
    from ragtune.registry import promote_version

    decision = promote_version(_config(config, set_), version, force=force)
    console.print(
        f"{decision.model_name} version {decision.version} -> [bold]{decision.alias}[/]: {decision.reason}"
    )


@app.command()
def compile(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the pipeline YAML.")] = None,
) -> None:
    """Compile the pipeline to YAML for Kubeflow Pipelines (--out may be a folder)."""
    from pipelines.compiler import COMPILED_PATH, compile_pipeline

    console.print(f"compiled -> {compile_pipeline(out or COMPILED_PATH)}", highlight=False)


KfpHost = Annotated[str | None, typer.Option("--host", envvar="KFP_HOST", help="Kubeflow Pipelines API URL.")]
KfpNamespace = Annotated[
    str | None, typer.Option("--namespace", envvar="KFP_NAMESPACE", help="Kubeflow profile namespace.")
]
TokenEnv = Annotated[str, typer.Option("--token-env", help="Env var holding a bearer token for the KFP API.")]
Kubeconfig = Annotated[
    bool, typer.Option("--kubeconfig", help="Authenticate with your kubeconfig instead of a token.")
]
Package = Annotated[
    Path | None, typer.Option("--package", help="Compiled pipeline YAML (default: pipelines/compiled/).")
]


def _package(package: Path | None) -> Path:
    from pipelines.compiler import COMPILED_PATH

    path = package or COMPILED_PATH
    if not path.is_file():
        raise RagtuneError(f"{path}: no compiled pipeline; run `ragtune compile` first")
    return path


@app.command()
def upload(
    host: KfpHost = None,
    namespace: KfpNamespace = None,
    token_env: TokenEnv = "KFP_TOKEN",
    kubeconfig: Kubeconfig = False,
    package: Package = None,
    name: Annotated[str, typer.Option(help="Pipeline name in Kubeflow.")] = "ragtune",
    version: Annotated[str, typer.Option(help="Pipeline version name.")] = "",
) -> None:
    """Upload the compiled pipeline (or a new version of it) to Kubeflow Pipelines."""
    from pipelines.kfp_client import connect
    from pipelines.kfp_client import upload as upload_pipeline
    from ragtune import __version__

    path = _package(package)  # a missing file is found before any network call
    client = connect(host, namespace, token_env=token_env, kubeconfig=kubeconfig)
    result = upload_pipeline(
        client,
        path,
        name,
        version or f"v{__version__}",
        "ragtune: documents to a judged, registered LoRA adapter",
    )
    console.print(
        f"pipeline {name} ({result.pipeline_id}) version {result.version_name} ({result.version_id})"
    )


@app.command()
def submit(
    config: ConfigOption = None,
    set_: SetOption = None,
    host: KfpHost = None,
    namespace: KfpNamespace = None,
    token_env: TokenEnv = "KFP_TOKEN",
    kubeconfig: Kubeconfig = False,
    package: Package = None,
    experiment: Annotated[str, typer.Option(help="KFP experiment (default: run.name).")] = "",
    git_revision: Annotated[
        str | None,
        typer.Option("--git-revision", help="Submit once per revision; recorded on the run and in MLflow."),
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="Run name (ignored with --git-revision).")] = None,
    service_account: Annotated[
        str | None, typer.Option(help="Service account for the run's pods.")
    ] = "ragtune-pipeline",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Pipeline parameter: --param synth_shards=4 (repeatable)."),
    ] = None,
    lock_namespace: Annotated[
        str | None,
        typer.Option(
            envvar="RAGTUNE_SUBMIT_LOCK_NAMESPACE",
            help="With --git-revision: namespace of the Kubernetes Lease that makes concurrent submits "
            "of one revision start one run (kubeconfig or in-cluster credentials).",
        ),
    ] = None,
) -> None:
    """Submit a pipeline run of the config (as config_json) plus any --param; prints the run URL."""
    from pipelines.kfp_client import connect, parameters_from_flags
    from pipelines.kfp_client import submit as submit_run
    from pipelines.lease import lease_lock

    cfg = _config(config, set_)
    if git_revision and not lock_namespace:
        logging.getLogger(__name__).warning(
            "no --lock-namespace: two submits of this revision started together could start two runs"
        )
    path = _package(package)
    params = {"config_json": cfg.to_json()} | parameters_from_flags(path, param or [])
    client = connect(host, namespace, token_env=token_env, kubeconfig=kubeconfig)
    result = submit_run(
        client,
        path,
        params,
        experiment or cfg.run.name,
        namespace=namespace,
        git_revision=git_revision,
        run_name=run_name,
        service_account=service_account,
        lock=lease_lock(lock_namespace) if git_revision and lock_namespace else None,
    )
    verb = "already submitted" if result.skipped else "submitted"
    console.print(
        f"{verb}: {result.display_name} {result.run_url}" + (f" ({result.reason})" if result.skipped else ""),
        soft_wrap=True,
        highlight=False,
    )


# Multi-node training (a Kubeflow TrainJob or PyTorchJob); the body lives in its own module.
from ragtune.train_job_command import train_job  # noqa: E402

app.command("train-job")(train_job)
# serve and deploy: bodies in ragtune/commands/serve.py
app.command("serve")(serve_commands.serve)
app.command("deploy")(serve_commands.deploy)
app.command("audit")(audit_commands.audit)  # body in ragtune/commands/audit.py


def main() -> None:
    """Console entry point (errors are one line, see :class:`_OneLineErrors`)."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished work is cached; run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
