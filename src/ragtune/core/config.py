"""One validated configuration for a whole ragtune run.

The config is a pydantic model loaded from YAML, then overridden by environment variables
(``RAGTUNE_<SECTION>__<KEY>=value``) and by CLI ``--set section.key=value`` flags, in that order.
Unknown keys and bad values are errors that name the dotted key. Every external endpoint is
optional: leaving it unset selects the embedded default (built-in readers, FAISS, a local
directory, the bundled SmolLM2, a local sqlite MLflow store).

Secrets never live here: the config names the environment variables that hold them
(``*_env`` fields), and those variables are read only where a client is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragtune.core.errors import ConfigError

ENV_PREFIX = "RAGTUNE_"


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    name: str = Field("ragtune", description="Human name of the run; used for the MLflow experiment.")
    root: str = Field(
        "runs",
        description="Local folder for everything a run writes (KFP pipeline root, caches, MLflow store).",
    )
    seed: int = Field(0, description="Seed for every random choice in the pipeline.")


class StorageConfig(Section):
    """S3/MinIO access, used for any ``s3://`` URI (corpus, cache, artifacts)."""

    endpoint: str | None = Field(
        None, description="host:port of MinIO/S3; unset means AWS S3 (s3.amazonaws.com)."
    )
    secure: bool = Field(True, description="Use TLS to the endpoint.")
    region: str | None = None
    access_key_env: str = Field("AWS_ACCESS_KEY_ID", description="Env var holding the access key.")
    secret_key_env: str = Field("AWS_SECRET_ACCESS_KEY", description="Env var holding the secret key.")
    session_token_env: str = Field(
        "AWS_SESSION_TOKEN", description="Env var holding an optional session token."
    )


class CorpusConfig(Section):
    uri: str = Field(
        "examples/psychiatry/corpus", description="Folder or s3://bucket/prefix holding the documents."
    )
    include: list[str] = Field(
        default_factory=lambda: [
            "*.pdf",
            "*.md",
            "*.markdown",
            "*.html",
            "*.htm",
            "*.txt",
            "*.tei.xml",
            "*.xml",
        ],
        description="Glob patterns (on file names) of files to parse.",
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["README*", ".*"], description="Glob patterns to skip."
    )


class CacheConfig(Section):
    uri: str | None = Field(
        None, description="Folder or s3:// URI for content-hash caches; unset means <run.root>/cache."
    )


class ParseConfig(Section):
    grobid_url: str | None = Field(
        None, description="GROBID server base URL; unset means the built-in readers."
    )
    grobid_concurrency: int = Field(4, ge=1, le=64)
    grobid_timeout_s: float = Field(120.0, gt=0)
    grobid_max_retries: int = Field(
        5, ge=0, description="Retries on connection errors, resets, timeouts and any HTTP 5xx."
    )
    grobid_consolidate_header: bool = False
    min_chars: int = Field(40, ge=0, description="A document with less extracted text is reported as empty.")
    isolation: Literal["process", "none"] = Field(
        "process",
        description="process: read each file in a reused worker process under the timeout and memory cap; "
        "none: in the stage's own process (debugging; a hostile file can then hang or crash the stage).",
    )
    file_timeout_s: float = Field(
        120.0, gt=0, description="Wall-clock limit for reading one file; over it the file fails as 'timeout'."
    )
    file_memory_mb: int = Field(
        2048,
        ge=16,
        description="Memory a reader may add while reading one file; over it the file fails as 'memory'.",
    )
    max_file_mb: float = Field(
        200.0, gt=0, description="Larger files are reported as 'too_large' and never read into memory."
    )
    max_failed_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="The parse stage fails, naming the files, when more than this fraction of them failed.",
    )


class EmbedderConfig(Section):
    backend: Literal["local", "openai"] = "local"
    model: str = Field(
        "all-MiniLM-L6-v2", description="Local: the packaged MiniLM or a folder; openai: model name."
    )
    base_url: str | None = Field(None, description="OpenAI-compatible embeddings endpoint (backend=openai).")
    api_key_env: str = "OPENAI_API_KEY"
    batch_size: int = Field(64, ge=1)
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout (backend=openai).")
    max_retries: int = Field(
        5,
        ge=0,
        description="Retries on timeouts, lost connections, 429 and 5xx (backend=openai; backoff with jitter).",
    )


class VectorStoreConfig(Section):
    backend: Literal["auto", "faiss", "weaviate"] = Field(
        "auto", description="auto: Weaviate if weaviate_url is set, else FAISS."
    )
    weaviate_url: str | None = Field(None, description="Weaviate HTTP URL, e.g. http://weaviate:8080.")
    weaviate_grpc_port: int = 50051
    weaviate_api_key_env: str = "WEAVIATE_API_KEY"
    collection_prefix: str = "Ragtune"


class IndexConfig(Section):
    chunk_tokens: int = Field(
        200, ge=16, le=8192, description="Maximum tokens per chunk (embedder tokenizer)."
    )
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by neighbouring chunks of one section.")
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    store: VectorStoreConfig = Field(default_factory=VectorStoreConfig)

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: Any) -> int:
        size = info.data.get("chunk_tokens")
        if size is not None and value >= size:
            raise ValueError(f"must be smaller than chunk_tokens ({size})")
        return value


class LLMEndpoint(Section):
    """An OpenAI-compatible chat endpoint, or the packaged SmolLM2 when ``base_url`` is unset."""

    base_url: str | None = Field(
        None, description="e.g. http://vllm:8000/v1; unset means the local SmolLM2 backend."
    )
    model: str = Field(
        "smollm2", description="Model name sent to the endpoint; local: 'smollm2' or a folder."
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="Env var holding the API key.")
    concurrency: int = Field(
        8,
        ge=1,
        le=512,
        description="Most requests in flight at once (the ceiling when adaptive_concurrency is on).",
    )
    adaptive_concurrency: bool = Field(
        True,
        description=(
            "Find the concurrency the server sustains (start at `concurrency`, cut on 429/503/timeouts,"
            " grow while latency is flat); Retry-After pauses the whole endpoint either way."
        ),
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        5, ge=0, description="Retries on 429, 5xx and timeouts (exponential backoff with jitter)."
    )
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(384, ge=1)
    price_prompt_per_m: float = Field(
        0.0, ge=0, description="Cost per million prompt tokens (for the ledger)."
    )
    price_completion_per_m: float = Field(0.0, ge=0, description="Cost per million completion tokens.")
    budget_usd: float | None = Field(
        None, ge=0, description="Stop the stage cleanly once this cost is reached."
    )
    budget_tokens: int | None = Field(
        None, ge=0, description="Stop the stage cleanly once this many tokens are used."
    )


class LLMConfig(Section):
    generator: LLMEndpoint = Field(default_factory=LLMEndpoint, description="Writes questions and answers.")
    judge: LLMEndpoint = Field(
        default_factory=lambda: LLMEndpoint(temperature=0.0, max_tokens=256),
        description="Scores answers; GPT-4-class in production, the weak local model by default.",
    )
    local_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads for the local backend; unset: one per CPU core this process may use.",
    )
    local_batch_size: int = Field(
        16,
        ge=1,
        description=(
            "Requests the local backend generates together; a finished row leaves the batch at once,"
            " so larger batches cost little beyond memory (135M model: ~1 MB of KV cache per row)."
        ),
    )
    local_stop_repeats: bool = Field(
        True,
        description="Stop a local generation as soon as it repeats a 12-token run (a loop), not at max_tokens.",
    )


class SynthConfig(Section):
    """Instruction synthesis (questions per table-of-contents category, RAG answers, filters)."""

    mode: Literal["self", "teacher"] = Field(
        "self",
        description=(
            "Who writes questions and answers. self (the paper's self fine-tuning): the model to be tuned"
            " — llm.generator when its base_url is set (serve the base model there), else the local"
            " backend running train.base_model. teacher: the llm.generator endpoint as configured."
        ),
    )
    toc_depth: int = Field(
        1,
        ge=1,
        le=6,
        description=(
            "Table-of-contents depth of a question category: 1 = one category per document title"
            " (a document's own H1 title is not counted twice), 2 = title › top-level section, ..."
        ),
    )
    questions_per_category: int = Field(
        4, ge=1, description="Question quota per category (the paper used 60–100; small for the demo)."
    )
    question_types: list[str] = Field(
        default_factory=lambda: ["definition", "criteria", "differential", "case_vignette", "treatment"],
        min_length=1,
        description="Question types cycled over each category's chunks (known types get a template hint).",
    )
    max_chunks_per_category: int | None = Field(
        None, ge=1, description="Use at most this many chunks of a category (seeded choice); unset: all."
    )
    templates_dir: str | None = Field(
        None, description="Folder with Jinja2 templates overriding the packaged ones (same file names)."
    )
    top_k: int = Field(3, ge=1, le=50, description="Chunks retrieved (whole corpus) to answer a question.")
    question_max_tokens: int = Field(128, ge=8, description="Completion token limit for a question.")
    answer_temperature: float = Field(
        0.2, ge=0, description="Sampling temperature for answers (questions use the endpoint's)."
    )
    min_question_chars: int = Field(15, ge=1, description="Shorter questions are rejected.")
    max_question_chars: int = Field(500, ge=1, description="Longer questions are rejected.")
    min_answer_chars: int = Field(
        40, ge=1, description="Shorter answers are rejected (a training answer should be a sentence)."
    )
    max_answer_chars: int = Field(2500, ge=1, description="Longer answers are rejected.")
    dedup_threshold: float = Field(
        0.92,
        gt=0,
        le=1,
        description="Questions whose embedding cosine reaches this are near-duplicates (the first is kept).",
    )
    groundedness_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "Minimum groundedness in [0, 1]: the judge's 1–5 rubric score mapped to (s-1)/4 when"
            " llm.judge.base_url is set, else the mean of lexical overlap and embedding similarity"
            " between the answer and its context."
        ),
    )
    relevance_threshold: float = Field(
        0.3, ge=-1, le=1, description="Minimum embedding cosine between a question and its answer."
    )
    eval_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of the question slots whose sources are held out for eval."
    )
    knowledge_eval_items: int = Field(
        50,
        ge=0,
        description=(
            "Training items whose question the generator rewords for the knowledge-injection eval set"
            " (eval_knowledge.jsonl; the answer kept); a seeded sample spread over categories; 0: none."
        ),
    )
    paraphrase_max_overlap: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A rewording whose word-bigram Jaccard overlap with the original reaches this is rejected.",
    )
    paraphrase_min_similarity: float = Field(
        0.7,
        ge=-1,
        le=1,
        description=(
            "A rewording whose embedding cosine with the original question is below this is rejected:"
            " it no longer asks for the same fact."
        ),
    )
    paraphrase_attempts: int = Field(
        3,
        ge=1,
        description=(
            "Rewordings asked per training item, each with another seed, until one passes every check"
            " (one at generator temperature 0, where another seed gives the same reply)."
        ),
    )
    holdout: Literal["chunks", "sections", "documents"] = Field(
        "chunks",
        description=(
            "The source unit the generalization eval set holds out before answers are written:"
            " single chunks (per category), whole sections or whole documents. Training answers"
            " never retrieve held-out chunks; eval answers retrieve only them."
        ),
    )
    repairs: bool = Field(
        True,
        description=(
            "Repair generated text mechanically before the filters (drop a lead-in such as 'According to"
            " the passage,', fix the question mark, cut a sentence the token cap broke off, ...); each"
            " repair is recorded in the item's provenance and counted in synth_report.json."
        ),
    )
    retry_rejected: bool = Field(
        True,
        description=(
            "Give each slot rejected for its text (not for LLM failures or the budget) one more attempt"
            " with another seed: a new question, or a new answer when only the answer failed."
        ),
    )
    answer_mode: Literal["generate", "extractive", "auto"] = Field(
        "auto",
        description=(
            "How answers are written. generate: the generator writes them from the retrieved chunks."
            " extractive: they are the retrieved chunks' own sentences that answer the question (picked"
            " by embedding score, or by the generator with extractive_choice=model), joined, so a weak"
            " model cannot invent a fact. auto: extractive for the packaged/local model, generate for"
            " an llm.generator endpoint with a base_url."
        ),
    )
    extractive_choice: Literal["retrieval", "model"] = Field(
        "retrieval",
        description="Extractive mode: who picks the sentences, the question–sentence cosine or the generator.",
    )
    extractive_max_sentences: int = Field(
        3, ge=1, le=10, description="Extractive mode: sentences per answer."
    )
    extractive_margin: float = Field(
        0.1,
        ge=0,
        le=2,
        description="Extractive mode: a further sentence is taken when its cosine is within this of the best.",
    )
    faithfulness: bool = Field(
        True,
        description=(
            "Check every answer sentence against its cited chunks (embedding alignment + fact-bearing"
            " terms; an LLM entailment verdict too where llm.judge.base_url is set); an unsupported"
            " sentence rejects the item as unsupported_claim."
        ),
    )
    faithfulness_threshold: float = Field(
        0.75,
        ge=-1,
        le=1,
        description=(
            "Minimum embedding cosine between an answer sentence and its closest cited-chunk sentence"
            " (0.75: on the issue-20 audit every wrong generated item kept at 0.6 had a sentence at"
            " 0.66-0.74, every right one none below 0.85)."
        ),
    )
    faithfulness_window: int = Field(
        1,
        ge=0,
        le=5,
        description=(
            "Neighbouring chunk sentences on each side of the aligned one where a name or number of the"
            " answer sentence may also be found."
        ),
    )

    @field_validator("max_question_chars", "max_answer_chars")
    @classmethod
    def _max_above_min(cls, value: int, info: Any) -> int:
        lower = info.data.get(info.field_name.replace("max_", "min_"))
        if lower is not None and value < lower:
            raise ValueError(f"must be at least {info.field_name.replace('max_', 'min_')} ({lower})")
        return value


class ClusterTrainConfig(Section):
    """Multi-node training on a Kubernetes cluster: a Kubeflow Trainer v2 ``TrainJob`` (default) or a
    Training Operator v1 ``PyTorchJob``. Read by ``ragtune train-job`` and the multi-node component."""

    api: Literal["trainjob", "pytorchjob"] = Field(
        "trainjob",
        description=(
            "trainjob: trainer.kubeflow.org/v1alpha1 TrainJob on a ClusterTrainingRuntime (Kubeflow "
            "Trainer 2.x); pytorchjob: kubeflow.org/v1 PyTorchJob (Training Operator 1.x)."
        ),
    )
    runtime: str = Field(
        "torch-distributed",
        description="ClusterTrainingRuntime the TrainJob references (its nodes run torchrun).",
    )
    nodes: int = Field(2, ge=1, description="Training nodes (pods).")
    gpus_per_node: int = Field(1, ge=0, description="GPUs each node requests; 0 trains on CPU (gloo).")
    procs_per_node: int | None = Field(
        None, ge=1, description="Training processes per node; unset: one per GPU (1 on CPU)."
    )
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of the GPUs.")
    cpu: str | None = Field(None, description="CPU request per node (Kubernetes quantity, e.g. '8').")
    memory: str | None = Field(
        None, description="Memory request and limit per node (Kubernetes quantity, e.g. '64Gi')."
    )
    queue: str | None = Field(
        None,
        description=(
            "Kueue LocalQueue: sets label kueue.x-k8s.io/queue-name and creates the job suspended, "
            "so Kueue admits it when quota allows."
        ),
    )
    priority_class: str | None = Field(
        None,
        description=(
            "PyTorchJob: the pods' PriorityClass. TrainJob (which has no such field): the Kueue "
            "WorkloadPriorityClass, label kueue.x-k8s.io/priority-class."
        ),
    )
    deadline_s: int | None = Field(
        None, ge=1, description="activeDeadlineSeconds: the job fails (and frees its nodes) after this long."
    )
    cleanup: Literal["delete", "keep"] = Field(
        "delete",
        description=(
            "delete: the launcher deletes the job once it succeeded and its outputs are copied (a failed "
            "job stays for its logs); keep: leave it."
        ),
    )
    ttl_after_finished_s: int | None = Field(
        None,
        ge=0,
        description="PyTorchJob only: runPolicy.ttlSecondsAfterFinished (the operator deletes it later).",
    )


class TrainConfig(Section):
    """LoRA training (transformers Trainer + peft; DeepSpeed ZeRO where CUDA is present or when asked)."""

    base_model: str = Field(
        "smollm2",
        description=(
            "Model to tune: 'smollm2' (the packaged SmolLM2-135M-Instruct), a local folder (e.g. a PVC "
            "mount), an s3:// prefix holding a transformers folder (downloaded once through `storage` "
            "into $RAGTUNE_MODEL_CACHE), or a hub id (token from `hf_token_env`). Cluster default: "
            "mistralai/Mistral-7B-Instruct-v0.3 from the model cache."
        ),
    )
    hf_token_env: str = Field("HF_TOKEN", description="Env var holding a Hugging Face token (gated hub ids).")
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Module names that get LoRA adapters.",
    )
    epochs: float = Field(1.0, gt=0, description="Passes over train.jsonl (when max_steps is -1).")
    max_steps: int = Field(
        -1, ge=-1, description="Optimizer steps; -1 means run `epochs`. Keep it small for CPU demos."
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak AdamW learning rate (linear decay).")
    warmup_steps: float = Field(
        0.0, ge=0, description="Linear warmup: >=1 is a step count, below 1 a fraction of all steps."
    )
    per_device_batch_size: int = Field(4, ge=1, description="Sequences per step per process.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Batches accumulated per optimizer step.")
    max_seq_len: int = Field(
        256, ge=16, description="Tokens per example after the chat template; longer ones are truncated."
    )
    deepspeed: Literal["auto", "off", "zero2", "zero3"] = Field(
        "auto",
        description=(
            "auto: ZeRO-2 when CUDA is present, off on CPU. zero2/zero3 run under the DeepSpeed launcher "
            "(on CPU with DS_ACCELERATOR=cpu); off trains in-process."
        ),
    )
    num_gpus: int | None = Field(
        None,
        ge=1,
        description="DeepSpeed launcher processes (one per GPU); unset: all visible GPUs, 1 on CPU.",
    )
    qlora: bool = Field(
        False, description="Load the base model in 4-bit NF4 (needs CUDA and bitsandbytes; else an error)."
    )
    merge_adapter: bool = Field(
        False, description="Also write the base with the adapter merged in (merged/)."
    )
    save_steps: int = Field(50, ge=1, description="Checkpoint every N steps (a crashed run resumes from it).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept in out_dir/checkpoints.")
    eval_steps: int = Field(50, ge=1, description="eval_loss on eval.jsonl every N steps (and at start/end).")
    logging_steps: int = Field(10, ge=1, description="Training loss logged every N steps (the loss curve).")
    packing: bool = Field(
        True,
        description=(
            "Pack each batch into one padding-free row with position ids restarting per example"
            " (attention kept within examples by sdpa/eager/flash attention); off: pad to the longest."
        ),
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, about 20-30% slower."
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description=(
            "torch threads when training on CPU; unset: torch's default (one per core). 1 is several "
            "times faster when other processes compete for a small CPU."
        ),
    )
    cluster: ClusterTrainConfig = Field(
        default_factory=ClusterTrainConfig, description="Multi-node training on a cluster."
    )

    @field_validator("max_steps")
    @classmethod
    def _steps_not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (train by epochs) or a positive step count")
        return value


RESERVED_CONTENDERS = frozenset({"base", "tuned", "base_rag", "tuned_rag", "champion"})
"""Contender names the evaluate stage gives its own models (with and without retrieval, the champion)."""


class ContenderConfig(Section):
    """An extra model answering the eval questions through an OpenAI-compatible endpoint."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description=(
            "Label in the report, e.g. gpt-3.5-turbo; 'base', 'tuned', 'base_rag', 'tuned_rag' and"
            " 'champion' are taken."
        ),
    )
    base_url: str = Field(description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1.")
    model: str = Field(description="Model name sent to the endpoint.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Env var holding the API key.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_CONTENDERS:
            raise ValueError(f"{', '.join(sorted(RESERVED_CONTENDERS))} name the models under evaluation")
        return value


class EvaluateConfig(Section):
    """Judged evaluation of base vs tuned model (and optional extra contenders)."""

    max_items: int | None = Field(
        100,
        ge=1,
        description=(
            "Cap on eval items (a seeded sample of eval.jsonl); null evaluates all of them. Below"
            " registry.min_eval_items no evaluation can promote."
        ),
    )
    max_new_tokens: int = Field(256, ge=1, description="Answer length cap for every contender.")
    batch_size: int = Field(
        8,
        ge=1,
        description="Questions per batched generate() of a local model; larger batches give more tokens/s on CPU, at more memory.",
    )
    contenders: list[ContenderConfig] = Field(
        default_factory=list,
        description="Extra models to compare with the tuned one, e.g. the paper's GPT-3.5 baseline.",
    )
    templates_dir: str | None = Field(
        None,
        description="Folder with Jinja2 templates overriding the packaged judge rubrics and report (same file names).",
    )
    bootstrap_samples: int = Field(2000, ge=100, description="Bootstrap resamples for every CI.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the bootstrap CIs.")
    pairwise: bool = Field(
        True, description="Also ask the judge to compare tuned with each other model, in both orders."
    )
    judge_max_tokens: int | None = Field(
        None, ge=8, description="Token cap for each judge reply; unset means llm.judge.max_tokens."
    )
    judge_context_chars: int = Field(
        6000, ge=0, description="Characters of the item's source context shown to the judge."
    )
    rag: bool = Field(
        True,
        description=(
            "Also evaluate base_rag and tuned_rag: the same models answering with synth.top_k chunks"
            " retrieved from the run's index, so the report shows what tuning adds to RAG."
        ),
    )
    primary_metric: Literal["auto", "judge", "corpus_facts", "reference"] = Field(
        "auto",
        description=(
            "The metric the comparisons and the promotion gate rest on. judge: the LLM judge's 1-10"
            " score; corpus_facts: closed-book likelihood accuracy on statements of the source"
            " documents against same-kind fact swaps (judge-free); reference: embedding cosine of the"
            " answer to the reference answer (reported, never chosen by auto). auto: judge when it"
            " passed its sanity check on the lower interval bounds and is not the weak local model,"
            " else corpus_facts."
        ),
    )
    fact_distractors: int = Field(
        3, ge=1, description="corpus_facts / dataset_recall: distractors (one fact swapped) per statement."
    )
    fact_statements_per_item: int = Field(
        2, ge=1, description="corpus_facts: fact-bearing sentences of each item's source chunk scored."
    )
    judge_check_items: int | None = Field(
        None,
        ge=1,
        description=(
            "Cap on the items of each eval set the judge check asks about (a seeded spread over"
            " categories; each item costs ten judge calls); null checks every evaluated item."
        ),
    )
    judge_min_discrimination: float = Field(
        0.8,
        ge=0,
        le=1,
        description=(
            "Judge sanity check: least lower interval bound, for each kind of known-worse answer"
            " (off-topic, fact-altered, truncated), of the share of items where the judge scores the"
            " reference answer above it."
        ),
    )
    judge_min_consistency: float = Field(
        0.7,
        ge=0,
        le=1,
        description=(
            "Judge sanity check: least lower interval bound, for each kind of known-worse answer, of"
            " the share of reference-vs-worse pairwise verdicts that survive swapping the positions."
        ),
    )
    leakage_cosine: float = Field(
        0.95,
        gt=0,
        le=1,
        description="An eval question this close (embedding cosine) to a training question or answer leaks.",
    )
    max_leakage: float = Field(
        0.2,
        ge=0,
        le=1,
        description=(
            "The evaluate stage fails when more than this share of eval questions has a 13-gram or"
            " embedding near-duplicate in the training questions and answers."
        ),
    )

    @field_validator("contenders")
    @classmethod
    def _unique_names(cls, value: list[ContenderConfig]) -> list[ContenderConfig]:
        names = [c.name for c in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate contender names: {', '.join(duplicates)}")
        return value


class RegistryConfig(Section):
    """MLflow tracking, registration and promotion (model registry aliases, not deprecated stages)."""

    tracking_uri: str | None = Field(
        None,
        description=(
            "MLflow tracking/registry URI. Unset: a local sqlite store sqlite:///<run.root>/mlflow/mlflow.db"
            " with artifacts under <run.root>/mlflow/artifacts. http(s)://host:port: an MLflow server;"
            " artifacts then go through the server (e.g. to MinIO/S3). Credentials never go here:"
            " MLflow reads MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN from the environment."
        ),
    )
    experiment: str | None = Field(None, description="MLflow experiment name; unset means run.name.")
    model_name: str = Field(
        "ragtune-adapter",
        min_length=1,
        description="Registered model name; each registration adds a version of it.",
    )
    promotion_margin: float = Field(
        0.0,
        ge=0,
        description=(
            "The paired mean difference on the primary metric (tuned − champion, or tuned − base when"
            " there is no champion) must be at least this much, in that metric's units (judge: 1-10"
            " points; reference: cosine), to become champion."
        ),
    )
    require_ci_above_zero: bool = Field(
        True,
        description=(
            "Also require the lower bound of the paired tuned − base (and tuned − champion) difference"
            " CI on the primary metric to be above 0."
        ),
    )
    min_eval_items: int = Field(
        30,
        ge=1,
        description=(
            "Fewest paired, scored eval items (tuned and base, on the primary metric) a promotion may"
            " rest on; fewer means not promoted."
        ),
    )
    champion_alias: str = Field(
        "champion",
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$",
        description="Alias of the version to serve.",
    )
    challenger_alias: str = Field(
        "challenger",
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$",
        description="Alias of the latest version that was registered but not promoted.",
    )
    lock_timeout_s: float = Field(
        120.0,
        gt=0,
        description=(
            "How long a promotion waits for another promotion of the same model to finish (it holds"
            " the promotion lock); after that it is refused with the holder named."
        ),
    )
    lock_ttl_s: float = Field(
        300.0,
        gt=0,
        description=(
            "A promotion lock older than this belongs to a promotion that died; the next one breaks it."
        ),
    )

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials_in_uri(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError(
                "must not hold credentials; set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD"
                " or MLFLOW_TRACKING_TOKEN in the environment"
            )
        return value or None

    @field_validator("challenger_alias")
    @classmethod
    def _aliases_differ(cls, value: str, info: Any) -> str:
        if value == info.data.get("champion_alias"):
            raise ValueError("must differ from champion_alias")
        return value


DEFAULT_SERVE_TOLERATIONS: list[dict[str, str]] = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
]


class ServeConfig(Section):
    """Serving a registered version: ``ragtune serve`` (local) and ``ragtune deploy`` (KServe manifests)."""

    alias: str | None = Field(
        None,
        description="Alias served or deployed when neither --alias nor --version is given; unset: registry.champion_alias.",
    )
    base_model: str | None = Field(
        None,
        description=(
            "The base model this server or deployment is for (as train.base_model names it); an adapter"
            " trained on another base is refused. Unset: the base the adapter records."
        ),
    )
    served_model_name: str | None = Field(
        None, description="Model name clients send; unset: registry.model_name."
    )
    host: str = Field("127.0.0.1", description="Address `ragtune serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `ragtune serve` listens on.")
    batch_size: int = Field(8, ge=1, description="Requests in flight decoded together.")
    batch_wait_ms: float = Field(
        5.0, ge=0, description="How long a batch waits for more requests after the first arrives."
    )
    max_tokens: int = Field(256, ge=1, description="Reply tokens when a request sets no max_tokens.")
    max_tokens_limit: int = Field(2048, ge=1, description="Largest max_tokens a request may ask for.")
    threads: int | None = Field(
        None, ge=1, description="torch threads of the local server; unset: one per core."
    )
    kserve_api: Literal["llminferenceservice", "inferenceservice"] = Field(
        "llminferenceservice",
        description=(
            "What `ragtune deploy` renders: a KServe LLMInferenceService (0.20+, the adapter under"
            " spec.model.lora.adapters) or an InferenceService on the Hugging Face/vLLM runtime with LoRA."
        ),
    )
    name: str | None = Field(
        None,
        pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Name of the serving object; unset: registry.model_name made DNS-safe.",
    )
    namespace: str = Field("ragtune", description="Namespace of the serving object.")
    base_model_uri: str | None = Field(
        None,
        description=(
            "Storage URI of the base model for KServe (hf://, s3://, pvc://, gs://); unset: derived from the"
            " adapter's base (packaged smollm2 -> hf://HuggingFaceTB/SmolLM2-135M-Instruct, a hub id -> hf://id,"
            " an s3:// prefix as is)."
        ),
    )
    artifact_uri_map: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Prefix rewrites of a version's artifact URI into one KServe can download, e.g."
            ' {"mlflow-artifacts:/": "s3://mlflow/"} for an MLflow server proxying s3://mlflow/.'
        ),
    )
    replicas: int = Field(1, ge=0, description="Serving replicas.")
    gpus: int = Field(1, ge=0, description="GPUs per replica (0: CPU serving).")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU.")
    resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"requests": {"cpu": "4", "memory": "24Gi"}, "limits": {"memory": "24Gi"}},
        description="Container requests and limits (the GPU count is added from `gpus`).",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector of the serving pods."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(t) for t in DEFAULT_SERVE_TOLERATIONS],
        description="Tolerations of the serving pods (default: the GPU taint).",
    )
    service_account: str | None = Field(
        None,
        description="Service account of the serving pods (its Secret annotations give KServe S3 access).",
    )
    runtime: str | None = Field(
        None,
        description="InferenceService only: the ServingRuntime to use; unset: KServe picks the Hugging Face runtime.",
    )


class EndpointGrant(Section):
    """An endpoint that may receive credentials, and which ones (see ``ragtune.core.endpoints``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Label used in errors.")
    url: str = Field(
        description=(
            "http(s)://host[:port][/path]: a request URL matches when scheme, host and port are equal"
            " and its path starts with this path (whole segments)."
        )
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="Env vars (the config's *_env names) whose values may be sent to this endpoint.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ValueError(f"{value!r} must be http(s)://host[:port][/path] without credentials")
        return value


class SecurityConfig(Section):
    """Which endpoints may receive which credentials (a credential sent anywhere else is refused)."""

    endpoints: list[EndpointGrant] = Field(
        default_factory=list,
        description=(
            "Endpoints and the secrets (env var names) they may receive. The CLI exports them as"
            " $RAGTUNE_ENDPOINTS for its tasks; where $RAGTUNE_ENDPOINTS is already set (in a cluster:"
            " from the ragtune-endpoints ConfigMap) it alone counts, so a run's config cannot grant itself"
            " a secret."
        ),
    )


class RagtuneConfig(Section):
    """The whole run. Sections are added by the stages that read them."""

    run: RunConfig = Field(default_factory=RunConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    parse: ParseConfig = Field(default_factory=ParseConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)

    def cache_uri(self) -> str:
        """Where content-hash caches live: the configured URI or ``<run.root>/cache``."""
        return self.cache.uri or str(Path(self.run.root) / "cache")

    def to_json(self) -> str:
        """Serialize for passing to KFP components (contains no secrets by construction)."""
        return self.model_dump_json()


def _format_validation_error(err: ValidationError, source: str) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        problems.append(f"{key}: {message}")
    return f"invalid config ({source}): " + "; ".join(problems)


def _parse_scalar(raw: str) -> Any:
    """Read an override value the way YAML would (numbers, booleans, null, lists)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(f"invalid override key {dotted!r}")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"invalid override {dotted!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Collect ``RAGTUNE_SECTION__KEY=value`` variables as dotted overrides.

    Only variables containing ``__`` count, so tool settings such as ``RAGTUNE_TEST_WEAVIATE_URL``
    never leak into the config.
    """
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and "__" in name[len(ENV_PREFIX) :]:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            found[dotted] = _parse_scalar(raw)
    return found


def parse_set_flags(flags: list[str]) -> dict[str, Any]:
    """Turn CLI ``--set key=value`` flags into dotted overrides."""
    found: dict[str, Any] = {}
    for flag in flags:
        key, sep, raw = flag.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"invalid --set {flag!r}: expected section.key=value")
        found[key.strip()] = _parse_scalar(raw)
    return found


def build_config(
    data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, source: str = "config"
) -> RagtuneConfig:
    """Validate ``data`` with dotted ``overrides`` applied on top."""
    tree: dict[str, Any] = json.loads(json.dumps(dict(data)))  # deep copy of plain data
    for dotted, value in (overrides or {}).items():
        _set_dotted(tree, dotted, value)
    try:
        return RagtuneConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RagtuneConfig:
    """Load YAML (if given), then env overrides, then explicit overrides (CLI flags win)."""
    data: dict[str, Any] = {}
    source = "env and --set, no config file"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        data = loaded or {}
    merged = {**env_overrides(environ), **(overrides or {})}
    return build_config(data, merged, source)


def config_from_json(
    text: str, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> RagtuneConfig:
    """Inverse of :meth:`RagtuneConfig.to_json`, used inside KFP components.

    ``overrides`` are the pipeline parameters a person filled in the Kubeflow UI (dotted keys);
    empty values mean "keep the config's value", which is what an untouched UI field sends.
    With ``environ``, its ``RAGTUNE_SECTION__KEY`` variables apply first (a pod's in-cluster
    endpoints from the ``ragtune-endpoints`` ConfigMap), then ``overrides``.
    """
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise ConfigError(f"pipeline parameter config_json is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError("pipeline parameter config_json must be a JSON object")
    chosen = {key: value for key, value in (overrides or {}).items() if value not in (None, "")}
    merged = {**(env_overrides(environ) if environ is not None else {}), **chosen}
    return build_config(data, merged, "pipeline parameter config_json")


def _absolute(value: str, base: Path) -> str:
    if "://" in value and not value.startswith("file://"):
        return value
    path = Path(value.removeprefix("file://")).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def with_absolute_paths(config: RagtuneConfig, base: Path | None = None) -> RagtuneConfig:
    """Resolve relative local locations against ``base`` (default: cwd) before the config travels.

    Pipeline tasks may run in another working directory (a pod, a subprocess); a path that meant
    something where the user typed it must mean the same there. Remote URIs are left alone.
    """
    base = base or Path.cwd()
    updated = config.model_copy(deep=True)
    updated.run.root = _absolute(updated.run.root, base)
    updated.corpus.uri = _absolute(updated.corpus.uri, base)
    if updated.cache.uri:
        updated.cache.uri = _absolute(updated.cache.uri, base)
    return updated
