"""Does the method work? The whole pipeline on the bundled corpus, sized to tell, and its verdict.

Runs the local pipeline (``pipelines.local_run.run_locally``: parse, index, synthesize, LoRA
train, evaluate, register) on the sample corpus with the demo config and these overrides:
``--per-category`` question slots per category (the demo uses fewer), ``--epochs`` real passes
over the training set (no step cap), and ``--eval-items`` evaluation items at most (the eval split
is raised so that enough exist). Then prints the contenders (base, tuned, base+RAG, tuned+RAG
where the evaluation has them) with their means and bootstrap CIs on the primary metric, and the
paired comparisons with their CIs, overall.

The evaluation's ``metrics.json`` is read as its typed report (``EvalMetrics``): the
``primary_metric`` and the paired ``comparisons`` (name, metric, mean, CI, n) on it.

Takes up to ~45 minutes on 2 cores at the defaults (not part of ``make test`` or ``make bench``;
``make quality`` runs it). ``--per-category 2 --epochs 1 --eval-items 5`` proves the plumbing
in a few minutes but decides nothing. The last line is
``tuned_minus_base=… ci_low=… ci_high=… n=… metric=…`` and, when the interval does not lie
above zero, the line before it says so.

Usage::

    python benchmarks/quality.py [--per-category 32] [--epochs 3] [--eval-items 60] [--root DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for pipelines.local_run
if TYPE_CHECKING:
    from ragtune.core.reports.evaluation import Comparison, EvalMetrics

DEFAULT_CONFIG = REPO / "examples" / "psychiatry" / "ragtune.yaml"


def find_metrics(run_dir: Path) -> EvalMetrics:
    """The evaluation's report in a local run folder (an InputError naming the file if unreadable)."""
    from pipelines.summary import EVAL_METRICS
    from ragtune.core.artifacts import EvaluationDir
    from ragtune.core.reports.evaluation import EvalMetrics

    return EvaluationDir(run_dir / EVAL_METRICS.parent).read_report(EvalMetrics)


def _fmt(value: Any, digits: int = 3) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def print_tables(metrics: EvalMetrics) -> Comparison | None:
    """Print the contenders and the comparisons; return tuned − base on the primary metric, if any."""
    metric = metrics.primary_metric
    print(f"primary metric: {metric}; eval items: {metrics.n_items}; judge: {metrics.judge_model}")
    print(f"{'contender':<12} {'n scored':>8} {'judge mean [CI]':>24} {'cosine':>7} {'rouge-L':>7}")
    for name, c in metrics.contenders.items():
        judge = f"{_fmt(c.score_mean, 2)} [{_fmt(c.score_ci_low, 2)}, {_fmt(c.score_ci_high, 2)}]"
        print(f"{name:<12} {c.n_scored:>8} {judge:>24} {_fmt(c.cosine_mean):>7} {_fmt(c.rouge_l_mean):>7}")
    print()
    print(f"{'comparison':<22} {'metric':<10} {'mean':>7} {'95% CI':>18} {'n':>4}")
    for comp in metrics.comparisons:
        interval = f"[{_fmt(comp.ci_low)}, {_fmt(comp.ci_high)}]"
        print(f"{comp.name:<22} {comp.metric:<10} {_fmt(comp.mean):>7} {interval:>18} {comp.n:>4}")
    return metrics.comparison("tuned-base")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--per-category", type=int, default=32, help="question slots per category")
    parser.add_argument("--epochs", type=float, default=3.0, help="passes over the training set")
    parser.add_argument("--eval-items", type=int, default=60, help="evaluation items at most")
    parser.add_argument("--root", type=Path, default=None, help="run.root (default: a temporary folder)")
    args = parser.parse_args(argv)

    from pipelines.local_run import run_locally
    from ragtune.core.config import load_config

    with tempfile.TemporaryDirectory(prefix="ragtune-quality-") as tmp:
        root = args.root or Path(tmp)
        config = load_config(
            args.config,
            {
                "run.root": str(root),
                "synth.questions_per_category": args.per_category,
                "synth.eval_fraction": 0.35,
                "train.max_steps": -1,
                "train.epochs": args.epochs,
                "train.eval_steps": 25,
                "train.save_steps": 25,
                "evaluate.max_items": args.eval_items,
            },
        )
        started = time.perf_counter()
        run = run_locally(config)
        minutes = (time.perf_counter() - started) / 60
        metrics = find_metrics(run.run_dir)
    print(f"pipeline: {minutes:.1f} min, {args.per_category} slots per category, {args.epochs:g} epochs")
    comp = print_tables(metrics)
    if comp is None:
        print("no tuned-base comparison in metrics.json")
        print("tuned_minus_base=nan ci_low=nan ci_high=nan n=0 metric=none")
        return 1
    if comp.ci_low is None or comp.ci_low <= 0:
        print(
            f"NOT SHOWN: the tuned − base interval on {comp.metric} does not lie above zero"
            f" (n={comp.n}); the method did not demonstrably improve the model in this run."
        )
    print(
        f"tuned_minus_base={_fmt(comp.mean, 4)} ci_low={_fmt(comp.ci_low, 4)}"
        f" ci_high={_fmt(comp.ci_high, 4)} n={comp.n} metric={comp.metric}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
