"""The one ragtune graph: the only place where stages are wired together.

``ragtune run`` executes it with KFP's local runner; ``ragtune compile`` writes the YAML that a
Kubeflow Pipelines cluster runs (committed in ``compiled/``). Both see exactly this function.

Platform settings (GPU node pool, secrets, /dev/shm) are kfp-kubernetes annotations: they land in
the compiled platform spec and the local runner ignores them.
"""

from typing import Any

from kfp import dsl, kubernetes

from components.config.component import resolve_config
from components.deploy.component import render_serving
from components.evaluate.component import evaluate_adapter
from components.index.component import index_documents
from components.parse.component import parse_documents
from components.register.component import register_model
from components.synthesize.component import shard_indexes, synthesize_dataset, synthesize_shard
from components.train.component import train_adapter
from components.train_pytorchjob.component import train_pytorchjob
from ragtune.core.config import RagtuneConfig

PIPELINE_NAME = "ragtune"
DEFAULT_CONFIG_JSON = RagtuneConfig().to_json()

# Kubernetes Secrets (see manifests/base/kustomization.yaml): secret name -> {key: env var}.
S3_SECRET = {
    "ragtune-s3": {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
}
LLM_SECRET = {"ragtune-llm": {"OPENAI_API_KEY": "OPENAI_API_KEY"}}
WEAVIATE_SECRET = {"ragtune-weaviate": {"WEAVIATE_API_KEY": "WEAVIATE_API_KEY"}}
HF_SECRET = {"ragtune-hf": {"HF_TOKEN": "HF_TOKEN"}}
MLFLOW_SECRET = {
    "ragtune-mlflow": {
        "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
    }
}
SERVICE_SECRETS: dict[str, dict[str, dict[str, str]]] = {
    "s3": S3_SECRET,
    "llm": LLM_SECRET,
    "weaviate": WEAVIATE_SECRET,
    "hf": HF_SECRET,
    "mlflow": MLFLOW_SECRET,
}
# What each stage opens: the one table that decides a task's Secrets (issues 10, 17). Each task
# gets only these, so a compromised or misconfigured stage cannot read another service's
# credentials. tests/pipelines/test_stage_clients.py runs the stages, records the clients they
# construct and compares with the compiled spec. GROBID takes no credential; config opens nothing.
STAGE_OPENS: dict[str, tuple[str, ...]] = {
    "config": (),
    "parse": ("s3",),  # corpus and parse cache on S3
    "index": ("s3", "llm", "weaviate"),  # cache, an OpenAI embedder, Weaviate
    "synthesize": ("s3", "llm", "weaviate"),  # cache, generator/judge, retrieval
    "train": ("s3", "hf"),  # an s3:// or gated hub base model
    "train-pytorchjob": ("s3",),  # stages data; its pods get S3/HF by Secret reference
    "evaluate": ("s3", "llm", "weaviate", "mlflow", "hf"),  # base model, judge, RAG index, champion
    "register": ("mlflow",),  # the server proxies artifacts to its store (--artifacts-destination)
    "deploy": ("mlflow",),  # resolves the version and its adapter URI through the MLflow server
}


def stage_secrets(stage: str) -> dict[str, dict[str, str]]:
    """Secret name -> {key: env var} for the services ``stage`` opens (``STAGE_OPENS``)."""
    return {name: keys for service in STAGE_OPENS[stage] for name, keys in SERVICE_SECRETS[service].items()}


# In-cluster endpoints as RAGTUNE_* overrides (ConfigMap ragtune-endpoints, same keys as env vars).
ENDPOINT_KEYS = [
    "MLFLOW_TRACKING_URI",
    "RAGTUNE_REGISTRY__TRACKING_URI",
    "RAGTUNE_STORAGE__ENDPOINT",
    "RAGTUNE_CACHE__URI",
    "RAGTUNE_PARSE__GROBID_URL",
    "RAGTUNE_INDEX__STORE__BACKEND",
    "RAGTUNE_INDEX__STORE__WEAVIATE_URL",
    "RAGTUNE_INDEX__STORE__WEAVIATE_GRPC_PORT",
]
# Which endpoints may receive which secret (ragtune.core.endpoints). Not optional: a pod starts
# only when the ConfigMap declares them, so a run's own config can never grant itself a secret.
GRANTS_KEY = "RAGTUNE_ENDPOINTS"
# NetworkPolicies (manifests/base/networkpolicies.yaml) admit ragtune's services only from pods
# carrying this label, which every task of this graph gets.
POD_LABEL = ("ragtune.io/pipeline", "ragtune")
# ... and this one, which the object store's egress policy selects (with training pods and MLflow).
PART_OF_LABEL = ("app.kubernetes.io/part-of", "ragtune")
# Writable model cache on every task: an s3:// base model is downloaded there once per pod
# (RAGTUNE_MODEL_DOWNLOADS in the ConfigMap points at it; the image's own cache is read-only).
MODEL_DOWNLOADS_MOUNT = "/var/cache/ragtune"
# Fail closed (issue 17): every task pod runs as the images' non-root user and has a deadline
# (activeDeadlineSeconds), so a hung endpoint cannot hold a node or a profile's quota forever.
# kfp-kubernetes 2.17 leaves allowPrivilegeEscalation=false, drop ALL and RuntimeDefault seccomp to
# the KFP backend and has no read-only-root setter (docs/deploy.md "Pod settings").
RUN_AS_USER = 10001  # the uid of docker/Dockerfile and docker/Dockerfile.train
TASK_TIMEOUT_S: dict[str, int] = {
    "config": 600,
    "synth-shards": 300,
    "parse": 4 * 3600,
    "index": 4 * 3600,
    "synthesize": 12 * 3600,
    "train": 24 * 3600,
    "train-pytorchjob": 48 * 3600,  # waits for the whole multi-node job
    "evaluate": 12 * 3600,
    "register": 3600,
    "deploy": 600,  # renders manifests from one registry lookup
}


def _fail_closed(task: dsl.PipelineTask, stage: str) -> dsl.PipelineTask:
    """The stage's deadline and the non-root identity: what every task of the graph carries."""
    kubernetes.set_timeout(task, TASK_TIMEOUT_S[stage])
    kubernetes.set_security_context(
        task, run_as_user=RUN_AS_USER, run_as_group=RUN_AS_USER, run_as_non_root=True
    )
    return task


def _in_cluster(task: dsl.PipelineTask, cpu: Any, memory: Any, stage: str) -> dsl.PipelineTask:
    """Resources, deadline and identity, the stage's secrets as env (optional: absent ones leave the
    embedded defaults), endpoints and their credential grants, the pod label and the model download volume."""
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    _fail_closed(task, stage)
    for name, keys in stage_secrets(stage).items():
        kubernetes.use_secret_as_env(task, secret_name=name, secret_key_to_env=keys, optional=True)
    kubernetes.use_config_map_as_env(
        task,
        config_map_name="ragtune-endpoints",
        config_map_key_to_env={k: k for k in [*ENDPOINT_KEYS, "RAGTUNE_MODEL_DOWNLOADS"]},
        optional=True,
    )
    kubernetes.use_config_map_as_env(
        task, config_map_name="ragtune-endpoints", config_map_key_to_env={GRANTS_KEY: GRANTS_KEY}
    )
    kubernetes.add_pod_label(task, *POD_LABEL)
    kubernetes.add_pod_label(task, *PART_OF_LABEL)
    kubernetes.empty_dir_mount(task, volume_name="model-downloads", mount_path=MODEL_DOWNLOADS_MOUNT)
    return task


def _on_gpu_pool(task: dsl.PipelineTask, node_selector: Any, tolerations: Any) -> None:
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)


def _evaluate_and_register(
    resolved: Any,
    parsed: dsl.PipelineTask,
    indexed: dsl.PipelineTask,
    synthesized: dsl.PipelineTask,
    model: Any,
    gpu_type: Any,
    gpu_node_selector: Any,
    gpu_tolerations: Any,
    git_revision: Any,
    deploy_manifests: Any,
) -> None:
    """Judge the trained adapter (one GPU) and register it: the same tail for both training branches.
    With ``deploy_manifests``, a version that became champion gets its serving manifests rendered.

    Evaluation is never served from the KFP cache: it judges the current champion beside the new
    adapter, and the champion can change between runs with the same inputs.
    """
    evaluated = _in_cluster(
        evaluate_adapter(
            config_json=resolved,
            dataset=synthesized.outputs["dataset"],
            index=indexed.outputs["index"],
            model=model,
            accelerator_type=gpu_type,
        ),
        "4",
        "16Gi",
        "evaluate",
    )
    evaluated.set_display_name("evaluate").set_accelerator_type(gpu_type).set_accelerator_limit(1)
    evaluated.set_caching_options(False)
    _on_gpu_pool(evaluated, gpu_node_selector, gpu_tolerations)
    registered = _in_cluster(
        register_model(
            config_json=resolved,
            documents=parsed.outputs["documents"],
            dataset=synthesized.outputs["dataset"],
            model=model,
            evaluation=evaluated.outputs["evaluation"],
            pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            git_revision=git_revision,
        ),
        "1",
        "4Gi",
        "register",
    )
    registered.set_display_name("register").set_caching_options(False)
    with (
        dsl.If(deploy_manifests == True, name="deploy-enabled"),  # noqa: E712 (a KFP condition)
        dsl.If(registered.outputs["Output"] == "champion", name="became-champion"),
    ):
        rendered = _in_cluster(
            render_serving(config_json=resolved, decision=registered.outputs["decision"]),
            "250m",
            "1Gi",
            "deploy",
        )
        rendered.set_display_name("deploy").set_caching_options(False)


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Documents -> RAG-grounded instruction dataset -> LoRA fine-tune -> judged evaluation -> MLflow registry.",
)
def ragtune_pipeline(
    config_json: str = DEFAULT_CONFIG_JSON,
    corpus_uri: str = "",
    base_model: str = "",
    questions_per_category: str = "",
    lora_r: str = "",
    lora_alpha: str = "",
    max_steps: str = "",
    generator_base_url: str = "",
    generator_model: str = "",
    judge_base_url: str = "",
    judge_model: str = "",
    promotion_margin: str = "",
    synth_shards: int = 1,
    gpu_type: str = "nvidia.com/gpu",
    gpu_count: int = 1,
    gpu_node_selector: dict = {},  # noqa: B006
    gpu_tolerations: list = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],  # noqa: B006
    train_cpu: str = "6",
    train_memory: str = "48Gi",
    distributed_nodes: int = 1,
    train_namespace: str = "",
    git_revision: str = "",
    deploy_manifests: bool = False,
) -> None:
    """Run ragtune end to end.

    The config fields below override ``config_json`` when filled; empty keeps its value.

    Args:
        config_json: The ragtune config as JSON (``ragtune submit`` fills it from your YAML).
        corpus_uri: Folder or s3://bucket/prefix of the documents.
        base_model: Model to LoRA-tune (the local default is the packaged SmolLM2).
        questions_per_category: Questions per table-of-contents category (the paper used 60-100).
        lora_r: LoRA rank.
        lora_alpha: LoRA alpha.
        max_steps: Training steps (-1 = the configured epochs).
        generator_base_url: OpenAI-compatible endpoint that writes the data; empty = the config's.
        generator_model: Model name at that endpoint.
        judge_base_url: OpenAI-compatible endpoint of the judge (GPT-4-class); empty = the config's.
        judge_model: Model name at that endpoint.
        promotion_margin: Judge-score margin the new version needs over the champion.
        synth_shards: Parallel synthesis tasks sharing the LLM response cache (1 = one task).
        gpu_type: Accelerator resource of the train task (e.g. nvidia.com/gpu).
        gpu_count: GPUs for the train task (one pod; DeepSpeed across them).
        gpu_node_selector: Node selector of the GPU pool, e.g. {"cloud.google.com/gke-accelerator": "nvidia-l4"}.
        gpu_tolerations: Tolerations for the GPU pool's taints.
        train_cpu: CPU request of the train task (the default fits an 8-vCPU GPU node).
        train_memory: Memory request and limit of the train task, /dev/shm included (the default fits a 64 GiB node).
        distributed_nodes: Nodes for training; above 1, a PyTorchJob (Training Operator) trains instead.
        train_namespace: Namespace for that PyTorchJob (empty = the pipeline's).
        git_revision: The git revision this run was submitted for (an MLflow tag; set by GitOps).
        deploy_manifests: When the new version becomes champion, render its KServe serving manifests (ragtune deploy) as an artifact.
    """
    config = _in_cluster(
        resolve_config(
            config_json=config_json,
            corpus_uri=corpus_uri,
            base_model=base_model,
            questions_per_category=questions_per_category,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            max_steps=max_steps,
            generator_base_url=generator_base_url,
            generator_model=generator_model,
            judge_base_url=judge_base_url,
            judge_model=judge_model,
            promotion_margin=promotion_margin,
        ).set_display_name("config"),
        "250m",
        "512Mi",
        "config",
    )
    resolved = config.output

    parsed = _in_cluster(parse_documents(config_json=resolved, corpus_uri=""), "1", "4Gi", "parse")
    parsed.set_display_name("parse").set_retry(num_retries=2, backoff_duration="30s")
    parsed.set_caching_options(False)  # it reads the corpus, which can change under the same URI

    indexed = _in_cluster(
        index_documents(config_json=resolved, documents=parsed.outputs["documents"]), "2", "8Gi", "index"
    )
    indexed.set_display_name("index").set_retry(num_retries=2, backoff_duration="30s")

    shards = shard_indexes(shard_count=synth_shards).set_display_name("synth-shards")
    _fail_closed(
        shards.set_cpu_request("100m").set_memory_request("256Mi").set_memory_limit("256Mi"), "synth-shards"
    )
    with dsl.ParallelFor(shards.output, parallelism=8, name="synth-fan-out") as shard:
        shard_task = _in_cluster(
            synthesize_shard(
                config_json=resolved,
                documents=parsed.outputs["documents"],
                index=indexed.outputs["index"],
                shard_index=shard,
                shard_count=synth_shards,
            ),
            "2",
            "8Gi",
            "synthesize",
        )
        shard_task.set_display_name("synthesize-shard").set_retry(num_retries=2, backoff_duration="60s")
    synthesized = _in_cluster(
        synthesize_dataset(
            config_json=resolved, documents=parsed.outputs["documents"], index=indexed.outputs["index"]
        ),
        "2",
        "8Gi",
        "synthesize",
    )
    synthesized.set_display_name("synthesize").after(shard_task)

    with dsl.If(distributed_nodes <= 1, name="train-in-pod"):
        trained = train_adapter(
            config_json=resolved,
            dataset=synthesized.outputs["dataset"],
            num_gpus=gpu_count,
            accelerator_type=gpu_type,
            cpu_request=train_cpu,
            memory_request=train_memory,
        )
        _in_cluster(trained, train_cpu, train_memory, "train")
        trained.set_display_name("train").set_accelerator_type(gpu_type).set_accelerator_limit(gpu_count)
        _on_gpu_pool(trained, gpu_node_selector, gpu_tolerations)
        kubernetes.empty_dir_mount(
            trained, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="16Gi"
        )
        trained.set_retry(num_retries=1, backoff_duration="120s")  # resumes from its checkpoints
        _evaluate_and_register(
            resolved,
            parsed,
            indexed,
            synthesized,
            trained.outputs["model"],
            gpu_type,
            gpu_node_selector,
            gpu_tolerations,
            git_revision,
            deploy_manifests,
        )

    with dsl.If(distributed_nodes > 1, name="train-pytorchjob"):
        job = train_pytorchjob(
            config_json=resolved,
            dataset=synthesized.outputs["dataset"],
            num_nodes=distributed_nodes,
            gpus_per_node=gpu_count,
            node_selector=gpu_node_selector,
            tolerations=gpu_tolerations,
            namespace=train_namespace,
            service_account="ragtune-pipeline",
            hf_secret="ragtune-hf",
        )
        _in_cluster(job, "250m", "1Gi", "train-pytorchjob").set_display_name(
            "train-pytorchjob"
        ).set_caching_options(False)
        _evaluate_and_register(
            resolved,
            parsed,
            indexed,
            synthesized,
            job.outputs["adapter"],
            gpu_type,
            gpu_node_selector,
            gpu_tolerations,
            git_revision,
            deploy_manifests,
        )
