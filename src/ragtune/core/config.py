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
    grobid_max_retries: int = Field(5, ge=0, description="Retries on 503 (GROBID busy) and timeouts.")
    grobid_consolidate_header: bool = False
    min_chars: int = Field(40, ge=0, description="A document with less extracted text is reported as empty.")


class EmbedderConfig(Section):
    backend: Literal["local", "openai"] = "local"
    model: str = Field(
        "all-MiniLM-L6-v2", description="Local: the packaged MiniLM or a folder; openai: model name."
    )
    base_url: str | None = Field(None, description="OpenAI-compatible embeddings endpoint (backend=openai).")
    api_key_env: str = "OPENAI_API_KEY"
    batch_size: int = Field(64, ge=1)


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
    concurrency: int = Field(8, ge=1, le=512, description="Requests in flight at once.")
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
    local_threads: int = Field(
        1, ge=1, description="torch threads for the local backend (1 is steadiest on small CPUs)."
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
    min_answer_chars: int = Field(20, ge=1, description="Shorter answers are rejected.")
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
        0.2, ge=0, lt=1, description="Share of each category's kept items held out as the eval split."
    )

    @field_validator("max_question_chars", "max_answer_chars")
    @classmethod
    def _max_above_min(cls, value: int, info: Any) -> int:
        lower = info.data.get(info.field_name.replace("max_", "min_"))
        if lower is not None and value < lower:
            raise ValueError(f"must be at least {info.field_name.replace('max_', 'min_')} ({lower})")
        return value


class TrainConfig(Section):
    """LoRA training (transformers + peft, DeepSpeed where available)."""


class EvaluateConfig(Section):
    """Judged evaluation of base vs tuned model."""


class RegistryConfig(Section):
    """MLflow tracking, registration and promotion."""


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
    source = "defaults"
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


def config_from_json(text: str) -> RagtuneConfig:
    """Inverse of :meth:`RagtuneConfig.to_json`, used inside KFP components."""
    try:
        return RagtuneConfig.model_validate_json(text or "{}")
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, "pipeline parameter config_json")) from None
