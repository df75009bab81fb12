"""Registry fixtures: a real ``mlflow server`` on moto S3, a tiny peft adapter, stage outputs.

The MLflow server is started once per test session (sqlite backend in a temp folder, artifacts
proxied to ``s3://<bucket>/mlflow`` on the moto server of ``tests.conftest.s3_server``). Tests keep
out of each other's way by using their own registered model name and experiment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ragtune.core.artifacts import EvaluationDir
from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.modelload import adapter_fingerprint
from ragtune.core.reports.evaluation import (
    CategoryScore,
    Comparison,
    ContenderSummary,
    EvalMetrics,
    JudgeCheck,
    Metric,
)
from ragtune.core.reports.synth import SynthReport, TokenStats
from ragtune.core.reports.train import LossPoint, TrainReport
from tests.auth_servers import server_process
from tests.conftest import S3Server, free_port, unavailable

BUCKET = "mlflow-artifacts"
ARTIFACT_PREFIX = "mlflow"
SERVER_START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class MlflowServer:
    url: str
    bucket: str
    prefix: str
    s3: S3Server


def _s3_client(s3: S3Server) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3.url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name="us-east-1",
    )


def bucket_keys(server: MlflowServer) -> list[str]:
    """Every object key in the artifact bucket (paginated)."""
    client = _s3_client(server.s3)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=server.bucket):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class _ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path


@pytest.fixture(scope="session")
def _mlflow_process(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_ServerProcess]:
    """Start ``mlflow server`` without waiting, so it boots while other fixtures run."""
    _s3_client(s3_server).create_bucket(Bucket=BUCKET)
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": s3_server.url,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    env.pop("AWS_SESSION_TOKEN", None)
    log_path = root / "server.log"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        f"s3://{BUCKET}/{ARTIFACT_PREFIX}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with server_process(command, env, log_path) as process:
        yield _ServerProcess(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)


@pytest.fixture(scope="session")
def mlflow_server(
    _mlflow_process: _ServerProcess, s3_server: S3Server, tiny_adapter: TinyModel
) -> MlflowServer:
    """``mlflow server`` (sqlite + S3 artifacts on moto) for the whole session; skipped if it cannot start.

    It depends on ``tiny_adapter`` only so that the model is built while the server boots.
    """
    server = _mlflow_process
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not _healthy(server.url):
        if server.process.poll() is not None or time.monotonic() > deadline:
            tail = server.log_path.read_text(errors="replace")[-1500:]
            unavailable(f"mlflow server did not start (exit {server.process.poll()}): {tail}")
        time.sleep(0.3)
    return MlflowServer(url=server.url, bucket=BUCKET, prefix=ARTIFACT_PREFIX, s3=s3_server)


# -- a tiny peft adapter -------------------------------------------------------------------------

WORDS = [
    "<unk>",
    "<pad>",
    "<s>",
    "</s>",
    "what",
    "is",
    "are",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "anxiety",
    "depression",
    "panic",
    "disorder",
    "treatment",
    "therapy",
    "criteria",
    "symptoms",
    "diagnosis",
    "?",
    ".",
    ",",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)
DATASET_HASH = "d" * 64


@dataclass(frozen=True)
class TinyModel:
    base_dir: Path
    adapter_dir: Path


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A random 1-layer Llama (32 wide) with a word-level tokenizer and a LoRA adapter on it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny")
    base_dir, adapter_dir = root / "base", root / "adapter"
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(adapter_dir)
    manifest = {  # ragtune.core.modelload.AdapterMeta
        "base_model": str(base_dir),
        "base_model_path": str(base_dir),
        "lora_r": 2,
        "lora_alpha": 4,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "qlora": False,
        "max_seq_len": 64,
        "dataset_sha256": DATASET_HASH,
        "global_step": 3,
        "dtype": "float32",
        "deepspeed": "off",
    }
    (adapter_dir / "ragtune_adapter.json").write_text(json.dumps(manifest))
    return TinyModel(base_dir=base_dir, adapter_dir=adapter_dir)


# -- stage outputs and configs ---------------------------------------------------------------------


Versus = tuple[str, float, float, float]
"""A champion evaluated beside the tuned model: (its identity adapter:<sha prefix>, mean, ci_low, ci_high)."""


def comparison(
    name: str, mean: float, low: float, high: float, n: int, metric: Metric = "judge"
) -> Comparison:
    first, second = name.split("-")
    return Comparison(
        name=name, first=first, second=second, metric=metric, mean=mean, ci_low=low, ci_high=high, n=n
    )


def eval_metrics(
    tuned: float,
    base: float,
    ci_low: float,
    ci_high: float,
    n: int = 30,
    champion: Versus | None = None,
    adapter_sha256: str | None = None,
) -> EvalMetrics:
    """An evaluate-stage report with these judge numbers (tuned − base paired over ``n`` items),
    having scored the adapter with digest ``adapter_sha256``."""

    def contender(name: str, mean: float, model: str) -> ContenderSummary:
        return ContenderSummary(
            name=name,
            model=model,
            n_items=n,
            n_answered=n,
            n_scored=n,
            answer_failures=0,
            judge_failures=0,
            score_sum=round(mean * n),
            score_mean=mean,
            score_ci_low=mean - 0.5,
            score_ci_high=mean + 0.5,
            rouge_l_mean=None,
            cosine_mean=None,
            per_category={"Anxiety › Panic disorder": CategoryScore(n_scored=n, score_mean=mean)},
        )

    contenders = {
        "tuned": contender("tuned", tuned, "adapter:tuned"),
        "base": contender("base", base, "hf:base"),
    }
    comparisons = [comparison("tuned-base", tuned - base, ci_low, ci_high, n)]
    if champion is not None:
        identity, mean, low, high = champion
        contenders["champion"] = contender("champion", tuned - mean, identity)
        comparisons.append(comparison("tuned-champion", mean, low, high, n))
    return EvalMetrics(
        judge_model="gpt-4o",
        judge_base_url="https://judge.example/v1",
        judge_is_weak=False,
        judge_templates={"score": "judge_score@1"},
        n_items=n,
        categories=["Anxiety › Panic disorder"],
        contender_names=list(contenders),
        seed=0,
        bootstrap_samples=1000,
        confidence=0.95,
        max_new_tokens=64,
        contenders=contenders,
        means={name: c.score_mean for name, c in contenders.items()},
        sums={name: c.score_sum for name, c in contenders.items()},
        n_common=n,
        sums_common={name: c.score_sum for name, c in contenders.items()},
        delta_mean=tuned - base,
        delta_ci_low=ci_low,
        delta_ci_high=ci_high,
        delta_n=n,
        delta_prob_positive=1.0 if ci_low > 0 else 0.5,
        pairwise={},
        failures={},
        failures_total=0,
        judge_parse={"json": n * len(contenders)},
        primary_metric="judge",
        judge_check=JudgeCheck(
            n=n,
            discrimination=0.95,
            consistency=0.9,
            score_gap=5.0,
            min_discrimination=0.8,
            min_consistency=0.8,
            passed=True,
        ),
        comparisons=comparisons,
        adapter_sha256=adapter_sha256,
    )


def write_eval(
    directory: Path,
    tuned: float,
    base: float,
    ci_low: float,
    ci_high: float,
    champion: Versus | None = None,
    adapter: Path | None = None,
) -> Path:
    """An evaluation folder as the evaluate stage leaves it (report, HTML, scores) after scoring
    ``adapter``; returns the folder."""
    evaluation = EvaluationDir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digest = adapter_fingerprint(adapter) if adapter is not None else None
    evaluation.write_report(
        eval_metrics(tuned, base, ci_low, ci_high, champion=champion, adapter_sha256=digest)
    )
    evaluation.html_path.write_text("<html><body><h1>tuned vs base</h1></body></html>")
    evaluation.scores_path.write_text(json.dumps({"item_id": "i1", "contender": "tuned", "score": 7}) + "\n")
    return directory


def train_report(curve: list[LossPoint], dataset_sha256: str = DATASET_HASH) -> TrainReport:
    """A train-stage report with this loss curve."""
    return TrainReport(
        base_model="tiny-llama",
        adapter_dir="adapter",
        dataset_sha256=dataset_sha256,
        train_examples=8,
        eval_examples=2,
        global_step=max((p.step for p in curve), default=0),
        steps_this_run=len(curve),
        train_loss=0.9,
        eval_loss_before=2.2,
        eval_loss_after=0.8,
        loss_curve=curve,
        tokens_seen=512,
        train_runtime_s=1.5,
        runtime_s=2.0,
        peak_rss_mb=300.0,
        device="cpu",
        world_size=1,
        dtype="float32",
        deepspeed="off",
    )


def make_config(tmp_path: Path, name: str, tracking_uri: str | None, **registry: Any) -> RagtuneConfig:
    """A config with its own run root, experiment and registered model name."""
    data: dict[str, Any] = {
        "run": {"name": f"exp-{name}", "root": str(tmp_path / "runs")},
        "registry": {"tracking_uri": tracking_uri, "model_name": f"model-{name}", **registry},
    }
    return build_config(data)


LINEAGE = {"corpus_hash": "c" * 64, "dataset_hash": DATASET_HASH}


def synth_report(**updates: Any) -> SynthReport:
    """A synthesis report of 80 slots, 44 kept (34 train, 10 eval); ``updates`` replace fields."""
    report = SynthReport(
        generator_model="local:smollm2",
        mode="self",
        groundedness_method="local:lexical+embedding",
        relevance_method="embedding",
        embedder="all-MiniLM-L6-v2",
        categories=10,
        generated=80,
        kept=44,
        train=34,
        eval=10,
        rejected=36,
        rejected_by_reason={"not_grounded": 20, "too_short": 16},
        rejected_by_stage={"answer": 36},
        per_category={},
        cache_hits=0,
        cache_misses=80,
        llm_stats={},
        ledger={},
        templates={},
        token_counter="tokenizer",
        question_tokens=TokenStats(),
        answer_tokens=TokenStats(),
        files={},
        elapsed_s=1.0,
    )
    return report.model_copy(update=updates)
