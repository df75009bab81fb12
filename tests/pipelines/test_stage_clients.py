"""What each task opens, found by running it, against the Secrets the compiled pipeline gives it.

``STAGE_OPENS`` in pipelines/ragtune_pipeline.py decides every task's Secrets; reading that table
back would only show the code agrees with itself. Here every component function runs (its
``python_func``: the code a pod runs, in graph order, in this process) with every service
configured: S3 (moto with IAM auth: the cache), an OpenAI-compatible server (generator, judge and
embedder, wanting its key), Weaviate (the protocol fake of tests/index), MLflow (``--app-name
basic-auth``: registry and champion) and the Hugging Face hub (a hub id served from a local cache,
offline). The client factories are instrumented (``minio.Minio``, ``openai.OpenAI``/``AsyncOpenAI``,
``weaviate.connect_to_custom``, ``mlflow.MlflowClient`` on a server, ``huggingface_hub``'s
downloads), so each task's recording says which services it really opened. Then every executor
of the compiled YAML (the PyTorchJob branch's second evaluate and register included: same
component, own executor) must mount exactly the credentials of what its component opened.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.auth_servers import AuthMlflow, AuthS3, auth_mlflow, auth_s3
from tests.llm.fake_openai import FakeOpenAI
from tests.pipelines.test_local_run import quick_demo_config, responder

pytestmark = pytest.mark.slow

# The env vars holding each service's credentials (the config's *_env defaults): what a task that
# opens the service needs its pod to have. The test's own list, not the pipeline's table.
CREDENTIALS = {
    "s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "llm": {"OPENAI_API_KEY"},
    "weaviate": {"WEAVIATE_API_KEY"},
    "mlflow": {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"},
    "hf": {"HF_TOKEN"},
}
HUB_ID = "ragtune-test/smollm2"
LLM_KEY = "sk-stage-clients"
WEAVIATE_URL = "http://weaviate.test:8080"


@dataclass
class Recorder:
    """Which services the task running now constructs clients for."""

    task: str | None = None
    opened: dict[str, set[str]] = field(default_factory=dict)

    def note(self, service: str) -> None:
        if self.task is not None:
            self.opened.setdefault(self.task, set()).add(service)

    @contextlib.contextmanager
    def running(self, task: str | None) -> Iterator[None]:
        before, self.task = self.task, task
        self.opened.setdefault(task or "", set())
        try:
            yield
        finally:
            self.task = before


def _wrap(recorder: Recorder, service: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        recorder.note(service)
        return original(*args, **kwargs)

    return wrapper


def _instrument(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    import huggingface_hub
    import minio
    import mlflow
    import openai
    import weaviate

    from tests.index.weaviate_fake import FakeClient, connect_to_custom_for

    for cls, service in [(minio.Minio, "s3"), (openai.OpenAI, "llm"), (openai.AsyncOpenAI, "llm")]:
        monkeypatch.setattr(cls, "__init__", _wrap(recorder, service, cls.__init__))
    boto_client = boto3.session.Session.client  # MLflow's own S3 client, were artifacts not proxied

    def session_client(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        if service_name == "s3":
            recorder.note("s3")
        return boto_client(self, service_name, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", session_client)
    for name in ("snapshot_download", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, _wrap(recorder, "hf", getattr(huggingface_hub, name)))
    weaviate_client = FakeClient()  # one in-memory server for the whole run
    monkeypatch.setattr(
        weaviate, "connect_to_custom", _wrap(recorder, "weaviate", connect_to_custom_for(weaviate_client))
    )
    mlflow_init = mlflow.MlflowClient.__init__

    def mlflow_client(self: Any, tracking_uri: str | None = None, *args: Any, **kwargs: Any) -> None:
        if (tracking_uri or mlflow.get_tracking_uri()).startswith(("http://", "https://")):
            recorder.note("mlflow")  # a local store needs no credential
        mlflow_init(self, tracking_uri, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "__init__", mlflow_client)


def _hub_cache(root: Path) -> Path:
    """An offline hub cache holding ``HUB_ID`` (the packaged SmolLM2's files), as a pod's would."""
    from ragtune.core.models import resolve_causal_lm_path

    repo = root / f"models--{HUB_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for file in Path(resolve_causal_lm_path("smollm2")).iterdir():
        (snapshot / file.name).symlink_to(file)
    return root


def _config(tmp: Path, s3: AuthS3, mlflow: AuthMlflow, llm_url: str) -> str:
    data = yaml.safe_load(quick_demo_config(tmp, llm_url).read_text())
    data["storage"] = {"endpoint": s3.endpoint, "secure": False}
    data["cache"] = {"uri": "s3://ragtune-cache/cache"}
    data["registry"]["tracking_uri"] = mlflow.url
    data["train"].update({"base_model": HUB_ID, "max_steps": 1, "eval_steps": 1, "save_steps": 1})
    data["index"]["embedder"] = {"backend": "openai", "model": "fake-embed", "base_url": llm_url}
    data["index"]["store"] = {"backend": "weaviate", "weaviate_url": WEAVIATE_URL}
    data["synth"]["relevance_threshold"] = -1.0  # the fake's embeddings are noise: keep the items
    from ragtune.core.config import build_config

    return build_config(data).to_json()


def _grants(s3: AuthS3, mlflow: AuthMlflow, llm_url: str) -> str:
    return json.dumps(
        [
            {"name": "s3", "url": s3.url, "secrets": sorted(CREDENTIALS["s3"])},
            {"name": "mlflow", "url": mlflow.url, "secrets": sorted(CREDENTIALS["mlflow"])},
            {"name": "llm", "url": llm_url, "secrets": ["OPENAI_API_KEY"]},
            {"name": "weaviate", "url": WEAVIATE_URL, "secrets": ["WEAVIATE_API_KEY"]},
        ]
    )


class Artifacts:
    """KFP artifact objects on folders under one root, as the executor hands them to a component."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, kind: type, task: str, name: str) -> Any:
        path = self.root / task / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return kind(name=name, uri=str(path))


def _run_graph(config_json: str, out: Artifacts, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every component of the graph once, in order, each under its task's name."""
    from kfp.dsl import HTML, Artifact, Dataset, Metrics, Model

    from components.config.component import resolve_config
    from components.deploy.component import render_serving
    from components.evaluate.component import evaluate_adapter
    from components.index.component import index_documents
    from components.parse.component import parse_documents
    from components.register.component import register_model
    from components.synthesize.component import synthesize_dataset, synthesize_shard
    from components.train.component import train_adapter
    from ragtune.core.config import config_from_json
    from ragtune.core.errors import ConfigError

    with recorder.running("resolve-config"):
        fields = inspect.signature(resolve_config.python_func).parameters
        empty = {name: "" for name in fields if name != "config_json"}
        resolved = resolve_config.python_func(config_json=config_json, **empty)
    documents = out(Dataset, "parse", "documents")
    with recorder.running("parse-documents"):
        parse_documents.python_func(resolved, "", documents, out(Metrics, "parse", "metrics"))
    index = out(Artifact, "index", "index")
    with recorder.running("index-documents"):
        index_documents.python_func(resolved, documents, index, out(Metrics, "index", "metrics"))
    with recorder.running("synthesize-shard"):  # shard 0 of 2: one shard makes no calls at all
        synthesize_shard.python_func(resolved, documents, index, 0, 2)
    dataset = out(Dataset, "synth", "dataset")
    with recorder.running("synthesize-dataset"):
        synthesize_dataset.python_func(resolved, documents, index, dataset, out(Metrics, "synth", "metrics"))
    with recorder.running("train-pytorchjob"):
        _run_pytorchjob(resolved, dataset, out, recorder, monkeypatch)
    model = out(Model, "train", "model")
    with recorder.running("train-adapter"):
        train_adapter.python_func(resolved, dataset, 0, "", model, out(Metrics, "train", "metrics"))
    with recorder.running("train-adapter"), pytest.raises(ConfigError, match=r"no config\.json there"):
        # The other way train opens a service: an s3:// base model, downloaded from the object
        # store (an empty prefix here, so the task stops right after opening it).
        s3_base = config_from_json(resolved, {"train.base_model": "s3://ragtune-cache/models/none"})
        train_adapter.python_func(
            s3_base.to_json(), dataset, 0, "", out(Model, "train-s3", "model"), out(Metrics, "train-s3", "m")
        )
    evaluation = out(Dataset, "evaluate", "evaluation")
    with recorder.running("evaluate-adapter"):
        evaluate_adapter.python_func(
            resolved, dataset, index, model, "", evaluation, out(HTML, "evaluate", "report.html"),
            out(Metrics, "evaluate", "metrics"),
        )  # fmt: skip
    decision = out(Dataset, "register", "decision")
    with recorder.running("register-model"):
        register_model.python_func(resolved, documents, dataset, model, evaluation, "run-1", "", decision)
    with recorder.running("render-serving"):  # in the graph only when it became champion; run regardless
        render_serving.python_func(resolved, decision, out(Dataset, "deploy", "serving"))


def _run_pytorchjob(
    resolved: str, dataset: Any, out: Artifacts, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multi-node training task (a TrainJob, the default API) against a fake Kubernetes API whose
    "controller" runs node 0's entry here; what that pod opens is not this task's (its pods get
    Secrets by reference)."""
    import kubernetes
    from kfp.dsl import Model

    from components.train_pytorchjob.component import train_pytorchjob
    from ragtune.core.reports.train import LossPoint
    from ragtune.train.cluster import node, stage
    from tests.registry.conftest import train_report
    from tests.train.cluster.fakes import FakeCore, FakeCustomObjects, condition, pod, status
    from tests.train.cluster.test_stage import _expand, _node_container

    # Stands in for torchrun + ragtune.train.launch on node 0: writes what rank 0 writes.
    training = (
        "import json, pathlib, sys\n"
        "out = pathlib.Path(sys.argv[1]) / 'out'\n"
        "(out / 'adapter').mkdir(parents=True, exist_ok=True)\n"
        "(out / 'adapter' / 'adapter_model.safetensors').write_bytes(b'weights')\n"
        f"report = json.loads({train_report([LossPoint(step=1, loss=1.0)]).model_dump_json()!r})\n"
        "report['adapter_dir'] = str(out / 'adapter')\n"
        "(out / 'metrics.json').write_text(json.dumps(report))\n"
    )

    workdir = out.root / "pytorchjob-master"

    def run_master(job: dict[str, Any]) -> None:
        command, env = _node_container(job)
        injected = {"RAGTUNE_NODE_WORKDIR": str(workdir), "RANK": "0", "PET_NODE_RANK": "0"}
        args = _expand(command[3:], injected)
        if "--workdir" in args:
            args[args.index("--workdir") + 1] = str(workdir)
        args = [*args[: args.index("--") + 1], sys.executable, "-c", training, str(workdir)]
        with recorder.running(None), monkeypatch.context() as pod_env:
            for entry in env:
                if "value" in entry:
                    pod_env.setenv(entry["name"], entry["value"])
            pod_env.setenv("RANK", "0")
            assert node.main(args) == 0

    name = stage.job_name(dataset.uri)
    api = FakeCustomObjects(
        [status(condition("Running")), status(condition("Succeeded"))], on_create=run_master
    )
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", lambda: api)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", lambda: FakeCore([([pod(f"{name}-node-0-0")], "")]))
    cluster_training = stage.ClusterTraining
    monkeypatch.setattr(stage, "ClusterTraining", lambda **kw: cluster_training(**{**kw, "poll_s": 0}))
    train_pytorchjob.python_func(
        config_json=resolved,
        dataset=dataset,
        adapter=out(Model, "pytorchjob", "adapter"),
        namespace="ragtune",
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    tmp = tmp_path_factory.mktemp("stage-clients")
    recorder = Recorder()
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        auth_s3(tmp) as s3,
        auth_mlflow(tmp, s3) as mlflow,
        FakeOpenAI(responder=responder, api_key=LLM_KEY) as llm,
    ):
        import huggingface_hub.constants

        s3.make_bucket("ragtune-cache")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(_hub_cache(tmp / "hub")))
        for name, value in {
            **s3.env(),
            **mlflow.env(),
            "OPENAI_API_KEY": LLM_KEY,
            "WEAVIATE_API_KEY": "wv-key",
            "HF_TOKEN": "hf-token",
            "RAGTUNE_ENDPOINTS": _grants(s3, mlflow, llm.url),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        _instrument(recorder, monkeypatch)
        _run_graph(_config(tmp, s3, mlflow, llm.url), Artifacts(tmp / "artifacts"), recorder, monkeypatch)
        yield recorder.opened


def _component_task(component: str) -> str:
    """``comp-evaluate-adapter-2`` -> ``evaluate-adapter``: the component function it compiles."""
    return re.sub(r"-\d+$", "", component.removeprefix("comp-"))


def test_every_executor_mounts_exactly_the_credentials_its_task_uses(recorded: dict[str, set[str]]) -> None:
    from pipelines.compiler import COMPILED_PATH
    from pipelines.task_contract import load_contracts

    contracts = load_contracts(COMPILED_PATH)
    checked, wrong = set(), []
    for task, contract in contracts.items():
        component = _component_task(f"comp-{task}")
        if component == "shard-indexes":
            continue  # plain Python on an integer: no config, nothing opened, no pod settings
        assert component in recorded, f"{contract.executor}: its component never ran here"
        needed = set().union(set(), *(CREDENTIALS[s] for s in recorded[component]))
        mounted = {var for var, source in contract.env.items() if source.kind == "secret"}
        if mounted != needed:
            wrong.append(
                f"{contract.executor} opens {sorted(recorded[component])}: needs {sorted(needed)}, "
                f"its pod gets {sorted(mounted)}"
            )
        checked.add(contract.executor)
    assert not wrong, "\n".join(wrong)
    assert {"exec-evaluate-adapter-2", "exec-register-model-2", "exec-train-pytorchjob"} <= checked


def test_the_recording_sees_each_service_somewhere(recorded: dict[str, set[str]]) -> None:
    """Every service was reachable and used by some task: a recorder that saw nothing proves nothing."""
    assert set().union(*recorded.values()) == set(CREDENTIALS)
    assert recorded["resolve-config"] == set()
    assert {"mlflow", "weaviate"} <= recorded["evaluate-adapter"]  # the champion and the RAG contenders
