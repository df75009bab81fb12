"""Execute the ragtune graph on this machine with KFP's own local runner, quietly.

The graph is the same one a cluster runs; only the runner differs (``kfp.local.SubprocessRunner``
with the current interpreter, so every task sees the installed ``ragtune``). The pipeline root is
``run.root`` (default ``runs/``), so one folder holds every artifact, cache and the local MLflow
store of a run. What the runner and the tasks print goes to ``<run>/logs/<task>.log``
(:mod:`pipelines.task_logs`); the console gets one line per task with its headline numbers.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pipelines.ragtune_pipeline import PIPELINE_NAME, ragtune_pipeline
from pipelines.task_logs import TaskLogRouter, strip_ansi
from ragtune.core.artifacts import DatasetDir, DecisionDir, DocumentsDir, EvaluationDir, IndexDir, ModelDir
from ragtune.core.config import RagtuneConfig, with_absolute_paths
from ragtune.core.errors import RagtuneError

if TYPE_CHECKING:
    from ragtune.registry.stage import DecisionRecord

log = logging.getLogger(__name__)


@dataclass
class LocalRun:
    run_dir: Path
    outputs: dict[str, Path] = field(default_factory=dict)  # "<task>/<output>" -> folder or file
    seconds: float = 0.0
    logs_dir: Path | None = None


def _collect_outputs(run_dir: Path) -> dict[str, Path]:
    outputs: dict[str, Path] = {}
    for task_dir in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name != "logs"):
        for output in sorted(task_dir.iterdir()):
            if output.name == "executor_output.json":
                continue
            if output.is_dir() and {p.name for p in output.iterdir()} <= {"executor_output.json"}:
                continue  # a task inside a loop: only KFP's bookkeeping, its data went elsewhere
            outputs[f"{task_dir.name}/{output.name}"] = output
    return outputs


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _parse_headline(task_dir: Path) -> str:
    from ragtune.parse import ParseReport

    report = DocumentsDir(task_dir / "documents").read_report(ParseReport)
    return f"{report.parsed_count} documents parsed, {report.failed_count} failed ({report.cache_hits} from cache)"


def _index_headline(task_dir: Path) -> str:
    from ragtune.index import IndexReport

    report = IndexDir(task_dir / "index").read_report(IndexReport)
    return f"{report.chunks} chunks from {report.documents_indexed} documents ({report.store_backend}, dim {report.dim})"


def _synth_headline(task_dir: Path) -> str:
    from ragtune.synth import SynthReport

    report = DatasetDir(task_dir / "dataset").read_report(SynthReport)
    return (
        f"{report.kept} items kept ({report.train} train, {report.eval} eval), "
        f"{report.rejected} rejected of {report.generated} planned"
    )


def _train_headline(task_dir: Path) -> str:
    from ragtune.train import TrainReport

    report = ModelDir(task_dir / "model").read_report(TrainReport)
    return (
        f"{report.global_step} steps on {report.train_examples} examples, train loss {_fmt(report.train_loss)}, "
        f"eval loss {_fmt(report.eval_loss_before)} -> {_fmt(report.eval_loss_after)} (n={report.eval_examples})"
    )


def _evaluate_headline(task_dir: Path) -> str:
    from ragtune.evaluate import EvalMetrics

    metrics = EvaluationDir(task_dir / "evaluation").read_report(EvalMetrics)
    delta = metrics.comparison("tuned-base")  # on the primary metric, the one the gate reads
    if delta is None:
        return f"{metrics.n_items} items; no tuned − base comparison"
    return (
        f"{metrics.n_items} items, {metrics.primary_metric}: tuned − base {_fmt(delta.mean, 3)} "
        f"[{_fmt(delta.ci_low, 3)}, {_fmt(delta.ci_high, 3)}] (n={delta.n})"
    )


def evaluation_report(run_dir: Path) -> Path:
    """Where a local run's HTML evaluation report is."""
    return EvaluationDir(run_dir / "evaluate-adapter" / "evaluation").html_path


def read_decision(run_dir: Path) -> DecisionRecord | None:
    """The register task's ``decision.json`` in a local run folder, ``None`` if it has none."""
    from ragtune.registry.stage import read_decision as read_record

    folder = DecisionDir(run_dir / "register-model" / "decision")
    return read_record(folder.root) if folder.report_path.is_file() else None


def _register_headline(task_dir: Path) -> str:
    decision = read_decision(task_dir.parent)
    return "" if decision is None else f"{decision.model_name} version {decision.version} -> {decision.alias}"


HEADLINES: dict[str, Callable[[Path], str]] = {
    "parse-documents": _parse_headline,
    "index-documents": _index_headline,
    "synthesize-dataset": _synth_headline,
    "train-adapter": _train_headline,
    "evaluate-adapter": _evaluate_headline,
    "register-model": _register_headline,
}


def task_headline(task: str, task_dir: Path) -> str | None:
    """The one-line summary of a finished task, read from its report (``None`` for plumbing tasks)."""
    headline = HEADLINES.get(task)
    return headline(task_dir) if headline is not None else None


Runner = Literal["subprocess", "docker"]


def run_locally(
    config: RagtuneConfig,
    verbose: bool = False,
    console: IO[str] | None = None,
    runner: Runner = "subprocess",
) -> LocalRun:
    """Run the whole pipeline locally and return where its outputs are.

    The config travels whole as ``config_json`` (the UI's override fields stay empty), with one
    synthesis task and in-process training. ``console`` (default stderr) gets a line per task;
    ``verbose`` copies every task's full log there too. ``runner="docker"`` runs every task in the
    CPU image (``$RAGTUNE_IMAGE``) the way a pod runs it (``pipelines/docker_runner.py``).
    """
    config = with_absolute_paths(config)
    root = Path(config.run.root)
    root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in root.glob(f"{PIPELINE_NAME}-*")}

    def run_dir() -> Path | None:
        new = [p for p in root.glob(f"{PIPELINE_NAME}-*") if p.name not in before and p.is_dir()]
        return max(new, key=lambda p: p.stat().st_mtime) if new else None

    router = TaskLogRouter(
        console or sys.stderr,
        run_dir,
        fallback_dir=root / "logs" / time.strftime("%Y%m%d-%H%M%S"),
        headline=task_headline,
        verbose=verbose,
    )
    containers: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with _tasks(config, runner) as containers, _routed(router):
            ragtune_pipeline(config_json=config.to_json(), synth_shards=1, distributed_nodes=1)
    except RuntimeError as err:  # the local runner reports a failed task this way
        router.finish()
        task = router.failed_task or "_kfp"
        path = router.log_path(task)
        for line in router.tail(task):
            router.console.write(f"  | {line}\n")
        raise RagtuneError(f"task {task} failed; its full log: {path} ({_first_line(err)})") from None
    finally:
        router.finish()
        if runner == "docker" and (where := run_dir()) is not None:
            from pipelines.docker_runner import write_records

            write_records(where, containers)
    found = run_dir()
    if found is None:
        raise RagtuneError(f"the local runner wrote no run folder under {root}")
    return LocalRun(
        run_dir=found,
        outputs=_collect_outputs(found),
        seconds=time.monotonic() - started,
        logs_dir=router.logs_dir,
    )


@contextlib.contextmanager
def _tasks(config: RagtuneConfig, runner: Runner) -> Iterator[list[dict[str, Any]]]:
    """KFP's local runner for ``runner``; yields the container records (docker; empty otherwise)."""
    from kfp import local

    if runner == "docker":
        from pipelines.docker_runner import docker_tasks

        with docker_tasks(config) as records:
            yield records
    else:
        local.init(
            runner=local.SubprocessRunner(use_venv=False), pipeline_root=config.run.root, raise_on_error=True
        )
        yield []


@contextlib.contextmanager
def _routed(router: TaskLogRouter) -> Iterator[None]:
    """stdout, the root logger and Python warnings of this process go to ``router`` while the graph runs.

    KFP's runner prints task output on stdout, logs between tasks through the root logger, and warns
    once per task that local runs ignore cluster settings; all of that belongs in the logs.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = [logging.StreamHandler(router)]
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(router), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        root.handlers, root.level = handlers, level
        for warning in caught:
            router.note(f"{warning.category.__name__}: {warning.message}")


def _first_line(err: BaseException) -> str:
    return strip_ansi(str(err)).splitlines()[0] if str(err) else type(err).__name__
