"""Registry stage: MLflow tracking of a pipeline run, model registration with lineage, promotion.

>>> decision = run_registry(config, train_dir, eval_dir, dataset_dir, lineage, run_id, out_dir)
>>> decision.alias, decision.reason
('champion', 'Promoted (on the judge metric): tuned − base (judge) +1.100 (margin 0.000, n=40); ...')

The default store is a local sqlite MLflow under ``<run.root>/mlflow``; ``registry.tracking_uri``
points at an MLflow server instead. Promotion uses registry aliases (``champion``/``challenger``).
"""

from __future__ import annotations

from ragtune.registry.champion import adapter_uri, fetch_adapter, fetch_champion, resolve_version
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.promote import PromotionDecision, promote, promote_version
from ragtune.registry.pyfunc_model import AdapterModel
from ragtune.registry.register import (
    ModelVersionInfo,
    get_version,
    git_revision,
    load_registered_model,
    model_uri,
    register_model,
)
from ragtune.registry.stage import pipeline_lineage, run_registry
from ragtune.registry.tracking import config_params, log_stage, start_pipeline_run, tracking_uri

__all__ = [
    "AdapterModel",
    "EvalSummary",
    "ModelVersionInfo",
    "PromotionDecision",
    "adapter_uri",
    "config_params",
    "fetch_adapter",
    "fetch_champion",
    "get_version",
    "git_revision",
    "load_registered_model",
    "log_stage",
    "model_uri",
    "pipeline_lineage",
    "promote",
    "promote_version",
    "register_model",
    "resolve_version",
    "run_registry",
    "start_pipeline_run",
    "tracking_uri",
]
