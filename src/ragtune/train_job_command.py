"""``ragtune train-job``: the multi-node training job of a config, printed (``--dry-run``) or run.

``--dry-run`` prints, as YAML, exactly the object the launcher would create (the same
:func:`ragtune.train.cluster.plan.plan_job`), without a cluster, like
``kubectl create --dry-run=client -o yaml``. Without it, the job is created with the kubeconfig's
credentials after the same checks the pipeline's launcher makes (the cluster serves the API, the
dataset is readable), followed to the end, and its outputs are left in ``<work uri>/output/``.
Registered in ``cli.py``; kept here so the CLI module stays a list of commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import typer

from ragtune.core.config import load_config, parse_set_flags
from ragtune.core.errors import ConfigError

DEFAULT_TRAIN_IMAGE = "ghcr.io/ragtune/ragtune-train:0.1.0"  # components/images.py's TRAIN_IMAGE default


def train_job(
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", help="s3:// prefix holding train.jsonl and eval.jsonl.", show_default=False
        ),
    ],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config (train.cluster.*).", show_default=False)
    ] = None,
    api: Annotated[
        Literal["trainjob", "pytorchjob"] | None,
        typer.Option("--api", help="Overrides train.cluster.api.", show_default=False),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the job as YAML; create nothing, need no cluster.")
    ] = False,
    namespace: Annotated[str, typer.Option(help="Namespace of the job.")] = "ragtune",
    image: Annotated[
        str, typer.Option(envvar="RAGTUNE_TRAIN_IMAGE", help="Training image of the nodes.")
    ] = DEFAULT_TRAIN_IMAGE,
    service_account: Annotated[str, typer.Option(help="Service account of the training pods.")] = "default",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a config key: --set train.cluster.nodes=4 (repeatable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The TrainJob (or PyTorchJob) that trains on DATASET: --dry-run prints it as YAML."""
    from ragtune.train.cluster.plan import ClusterTraining, job_name, job_yaml, plan_job
    from ragtune.train.cluster.stage import check_dataset

    overrides = parse_set_flags(set_ or [])
    if api:
        overrides["train.cluster.api"] = api
    cfg = load_config(config, overrides=overrides)
    options = ClusterTraining(image=image, namespace=namespace, service_account=service_account)
    name = job_name(dataset)
    check_dataset(cfg, dataset, read=False)
    if dry_run:
        typer.echo(job_yaml(plan_job(cfg, name, dataset, options, os.environ)), nl=False)
        return
    from kubernetes import client
    from kubernetes import config as kube_config

    from ragtune.train.cluster.plan import work_uri
    from ragtune.train.cluster.stage import launch

    try:
        kube_config.load_kube_config()
    except (kube_config.ConfigException, OSError) as err:
        raise ConfigError(f"no kubeconfig to reach a cluster ({err}); --dry-run needs none") from None
    launch(cfg, name, dataset, options, client.CustomObjectsApi(), client.CoreV1Api())
    typer.echo(f"outputs in {work_uri(cfg, name)}/output/")
