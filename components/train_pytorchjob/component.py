"""KFP component: LoRA training on several GPU nodes through a Kubeflow Trainer v2 TrainJob (default)
or a Training Operator v1 PyTorchJob (``train.cluster.api``). The name stays for compatibility.

No ``from __future__ import annotations`` here: kfp reads the parameter annotations as objects.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import CPU_IMAGE, TRAIN_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def train_pytorchjob(
    config_json: str,
    dataset: Input[Dataset],
    adapter: Output[Model],
    num_nodes: int = 2,
    gpus_per_node: int = 1,
    node_selector: dict = {},  # noqa: B006 - KFP reads the default from the signature
    tolerations: list = [],  # noqa: B006
    image: str = TRAIN_IMAGE,
    namespace: str = "",
    service_account: str = "default",
    s3_secret: str = "ragtune-s3",
    hf_secret: str = "",
    timeout_hours: float = 24.0,
) -> None:
    """Train the LoRA adapter with DeepSpeed on ``num_nodes`` x ``gpus_per_node`` GPUs (a TrainJob or PyTorchJob).

    This pod only orchestrates: it checks the cluster serves ``train.cluster.api`` (TrainJob on the
    ``train.cluster.runtime`` ClusterTrainingRuntime, or PyTorchJob), copies the dataset to
    ``<cache.uri>/<trainjobs|pytorchjobs>/<job>/dataset/`` (``cache.uri`` must be ``s3://``), creates
    the job (``num_nodes`` pods of ``image``, torchrun on ``ragtune.train.launch``; the same body
    ``ragtune train-job --dry-run`` prints), streams node 0's log, and copies ``output/`` (adapter/,
    metrics.json) back into the ``adapter`` artifact. Its service account needs the job and pod-log
    RBAC of ``manifests/base/rbac.yaml`` (``ragtune-pipeline``).

    Args:
        config_json: The resolved ragtune config as JSON (no secrets).
        dataset: Output of the synth stage (train.jsonl, eval.jsonl).
        adapter: Folder with adapter/ (peft adapter, tokenizer) and metrics.json, like the train stage's.
        num_nodes: Training nodes (pods); overrides train.cluster.nodes.
        gpus_per_node: GPUs per node (one training process each); 0 trains on CPU (testing only); overrides train.cluster.gpus_per_node.
        node_selector: Node labels selecting the GPU pool.
        tolerations: Kubernetes tolerations (e.g. for the nvidia.com/gpu taint).
        image: The training image (docker/Dockerfile.train).
        namespace: Where the job goes; empty means this pod's namespace.
        service_account: Service account of the training pods (they need no API access).
        s3_secret: Secret holding the S3 credentials, keys named like storage.*_env.
        hf_secret: Secret holding the Hugging Face token (key train.hf_token_env); empty for none.
        timeout_hours: The job is deleted and the task fails if it runs longer.
    """
    from ragtune.train.cluster.stage import run_cluster_training

    run_cluster_training(
        config_json,
        dataset.path,
        adapter.path,
        dataset.uri,
        image=image,
        namespace=namespace,
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        node_selector=dict(node_selector),
        tolerations=list(tolerations),
        service_account=service_account,
        s3_secret=s3_secret,
        hf_secret=hf_secret,
        timeout_s=timeout_hours * 3600.0,
    )
