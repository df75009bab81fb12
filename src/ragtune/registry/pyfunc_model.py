"""The registered model: an ``mlflow.pyfunc`` model wrapping the base model plus the LoRA adapter.

The model's only artifact is the adapter folder (peft weights, tokenizer, ``ragtune_adapter.json``),
small even for large base models. ``load_context`` loads it with
:func:`ragtune.core.modelload.load_tuned_model`, the loader the evaluate stage uses: the base model named in
``ragtune_adapter.json`` through :func:`ragtune.core.models.load_causal_lm` (the packaged SmolLM2,
a folder, an ``s3://`` prefix or a hub id) with the adapter applied by peft. ``predict`` takes
questions and returns answers, generated exactly like the evaluate stage's ``tuned`` contender
(chat template, the dataset's system message, greedy decoding), so the served model answers as it
was judged. The model is logged as code (``model_code.py``), not as a pickle.

>>> model = mlflow.pyfunc.load_model("models:/ragtune-adapter@champion")
>>> model.predict(["What are the diagnostic criteria of panic disorder?"])
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.pyfunc.model import PythonModel

from ragtune.core.config import RagtuneConfig

log = logging.getLogger(__name__)

ADAPTER_ARTIFACT = "adapter"
CONFIG_KEY = "ragtune_config"
DEFAULT_MAX_NEW_TOKENS = 256


def serving_config(config: RagtuneConfig) -> dict[str, Any]:
    """The config sections loading needs where the model is served (no secrets: env var names only)."""
    return {
        "storage": config.storage.model_dump(mode="json"),  # an s3:// base model
        "train": {"hf_token_env": config.train.hf_token_env},  # a gated hub base model
    }


def _questions(model_input: Any) -> list[str]:
    """Questions from a list of strings, a string, a DataFrame/dict with a ``question`` column."""
    if isinstance(model_input, str):
        return [model_input]
    columns = getattr(model_input, "columns", None)
    if columns is not None:  # pandas DataFrame
        column = "question" if "question" in columns else columns[0]
        return [str(v) for v in model_input[column].tolist()]
    if isinstance(model_input, Mapping):
        value = model_input.get("question", model_input.get("questions"))
        return _questions(value)
    if isinstance(model_input, Sequence):
        return [str(v) for v in model_input]
    raise TypeError(f"expected questions as a list of strings, got {type(model_input).__name__}")


class AdapterModel(PythonModel):
    """pyfunc wrapper of base model + LoRA adapter: questions in, answers out.

    ``model_config``: ``system_prompt`` (the dataset's system message, or null), ``max_new_tokens``,
    ``batch_size``, ``threads`` (torch threads; null leaves torch's default). ``predict`` accepts
    ``params={"max_new_tokens": n}``.
    """

    def load_context(self, context: Any) -> None:
        from ragtune.core.llm.hf_chat import HFChat
        from ragtune.core.modelload import load_tuned_model

        self._config: dict[str, Any] = dict(context.model_config or {})
        config = RagtuneConfig.model_validate(self._config.get(CONFIG_KEY) or {})
        adapter_dir = Path(context.artifacts[ADAPTER_ARTIFACT])
        loaded = load_tuned_model(adapter_dir, config)  # base from ragtune_adapter.json, adapter via peft
        self._chat = HFChat(
            f"adapter:{adapter_dir.name}",
            lambda: loaded,
            batch_size=int(self._config.get("batch_size") or 4),
            threads=self._config.get("threads"),
        )

    # model_input is left unannotated on purpose: MLflow reads predict's type hints as a schema, and
    # the explicit signature (one string column) already describes the input.
    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> list[str]:
        from ragtune.core.llm.hf_chat import answer_request

        questions = _questions(model_input)
        max_new_tokens = int(
            (params or {}).get("max_new_tokens")
            or self._config.get("max_new_tokens")
            or DEFAULT_MAX_NEW_TOKENS
        )
        system = self._config.get("system_prompt")
        requests = [
            answer_request(
                ([{"role": "system", "content": str(system)}] if system else [])
                + [{"role": "user", "content": question}],
                max_new_tokens,
                seed=0,
            )
            for question in questions
        ]
        size = max(1, self._chat.batch_size)
        answers: list[str] = []
        for start in range(0, len(requests), size):
            answers.extend(r.text for r in self._chat.generate_batch(requests[start : start + size]))
        return answers


def _requirement(package: str) -> str | None:
    try:
        return f"{package}=={metadata.version(package).split('+')[0]}"  # torch 2.x+cpu -> any build
    except metadata.PackageNotFoundError:
        return None


def pip_requirements() -> list[str]:
    """Pinned runtime requirements (listed, not inferred: inference would load the base model)."""
    names = ("ragtune", "mlflow", "torch", "transformers", "peft", "accelerate", "safetensors", "gguf")
    return [req for req in (_requirement(n) for n in names) if req]


def save_pyfunc_model(
    path: Path,
    adapter_dir: Path,
    config: RagtuneConfig,
    *,
    mlflow_model: Any = None,
    system_prompt: str | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    metadata_: Mapping[str, Any] | None = None,
) -> None:
    """Write the pyfunc model folder for ``adapter_dir`` at ``path`` (which must not exist)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string")]),  # unnamed: a plain list of questions is valid input
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", max_new_tokens)]),
    )
    model_config = {
        "system_prompt": system_prompt,
        "max_new_tokens": max_new_tokens,
        "batch_size": config.evaluate.batch_size,
        "threads": config.llm.local_threads,
        CONFIG_KEY: serving_config(config),
    }
    with warnings.catch_warnings():
        # an input example would make MLflow load the base model to validate it; the signature says it all
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(Path(__file__).with_name("model_code.py")),  # models from code: no pickle
            artifacts={ADAPTER_ARTIFACT: str(adapter_dir)},
            signature=signature,
            pip_requirements=pip_requirements(),
            model_config=model_config,
            metadata=dict(metadata_ or {}),
            mlflow_model=mlflow_model,
        )
