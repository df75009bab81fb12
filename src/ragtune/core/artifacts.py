"""The artifacts that cross a stage boundary, each a small class that owns its file names.

A stage writes an artifact into one folder and a later stage (or a component, the CLI, the
registry, a benchmark) reads it from there. Instead of every reader spelling ``train.jsonl`` or
``metrics.json`` again, each folder layout is written down once here:

========================  ======================  ==================================================
artifact                  written by              files
========================  ======================  ==================================================
:class:`DocumentsDir`     parse                   ``documents.jsonl``, ``parse_report.json``
:class:`IndexDir`         index                   ``chunks.jsonl``, ``index/``, ``index_report.json``
:class:`DatasetDir`       synth                   ``train.jsonl``, ``eval.jsonl``,
                                                  ``eval_knowledge.jsonl``, ``rejected.jsonl``,
                                                  Alpaca twins, ``README.md``, ``synth_report.json``
:class:`ModelDir`         train                   ``adapter/`` (+ ``ragtune_adapter.json``),
                                                  ``merged/``, ``checkpoints/``, ``metrics.json``
:class:`EvaluationDir`    evaluate                ``scores.jsonl``, ``pairwise.jsonl``,
                                                  ``metrics.json``, ``report.html``
:class:`DecisionDir`      registry                ``decision.json``
========================  ======================  ==================================================

Records that live in core (documents, chunks, instruction items) are read and written typed here.
:meth:`Artifact.read_report` takes the report's model class (``DocumentsDir(folder).read_report(
ParseReport)``) and returns a validated object, or an :class:`~ragtune.core.errors.InputError` naming
the file and the first invalid field. A report only its own stage reads keeps its model in that
stage; the ones another stage reads (``TrainReport``, ``EvalMetrics``, which the registry logs and
decides on) live in :mod:`ragtune.core.reports`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from ragtune.core.errors import InputError
from ragtune.core.fsutil import atomic_write_text
from ragtune.core.records import Chunk, Document, InstructionItem, read_jsonl, write_jsonl

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Artifact:
    """A folder one stage writes and others read; ``REPORT`` is its JSON report file."""

    root: Path
    REPORT: ClassVar[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def report_path(self) -> Path:
        return self.root / self.REPORT

    def read_report(self, model: type[M]) -> M:
        """The report as ``model``; missing or invalid is an InputError naming the file."""
        path = self.report_path
        try:
            return model.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: not found (is {self.root} a {type(self).__name__}?)") from None
        except ValidationError as err:
            problems = err.errors()
            where = ".".join(str(p) for p in problems[0]["loc"]) or "<root>"
            more = f"; {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
            raise InputError(
                f"{path}: not a valid {model.__name__} ({where}: {problems[0]['msg']}{more})"
            ) from None

    def write_report(self, report: BaseModel) -> Path:
        """Write ``report`` as indented JSON, atomically (a reader never sees half of it)."""
        return atomic_write_text(self.report_path, report.model_dump_json(indent=2) + "\n")


@dataclass(frozen=True)
class DocumentsDir(Artifact):
    """The parse stage's output: one :class:`~ragtune.core.records.Document` per line."""

    DOCUMENTS: ClassVar[str] = "documents.jsonl"
    REPORT: ClassVar[str] = "parse_report.json"

    @property
    def documents_path(self) -> Path:
        return self.root / self.DOCUMENTS

    def read(self) -> list[Document]:
        return read_jsonl(self.documents_path, Document)

    def write(self, documents: list[Document]) -> int:
        return write_jsonl(self.documents_path, documents)


@dataclass(frozen=True)
class IndexDir(Artifact):
    """The index stage's output: the chunks, the vector store folder (or a Weaviate pointer)."""

    CHUNKS: ClassVar[str] = "chunks.jsonl"
    STORE_DIR: ClassVar[str] = "index"
    REPORT: ClassVar[str] = "index_report.json"

    @property
    def chunks_path(self) -> Path:
        return self.root / self.CHUNKS

    @property
    def store_dir(self) -> Path:
        return self.root / self.STORE_DIR

    def read(self) -> list[Chunk]:
        return read_jsonl(self.chunks_path, Chunk)

    def write(self, chunks: list[Chunk]) -> int:
        return write_jsonl(self.chunks_path, chunks)


@dataclass(frozen=True)
class DatasetDir(Artifact):
    """The synthesis stage's output: the instruction dataset, its rejects and its card."""

    TRAIN: ClassVar[str] = "train.jsonl"
    EVAL: ClassVar[str] = "eval.jsonl"
    EVAL_KNOWLEDGE: ClassVar[str] = "eval_knowledge.jsonl"
    REJECTED: ClassVar[str] = "rejected.jsonl"
    TRAIN_ALPACA: ClassVar[str] = "train.alpaca.jsonl"
    EVAL_ALPACA: ClassVar[str] = "eval.alpaca.jsonl"
    CARD: ClassVar[str] = "README.md"
    REPORT: ClassVar[str] = "synth_report.json"

    @property
    def train_path(self) -> Path:
        return self.root / self.TRAIN

    @property
    def eval_path(self) -> Path:
        return self.root / self.EVAL

    @property
    def eval_knowledge_path(self) -> Path:
        return self.root / self.EVAL_KNOWLEDGE

    @property
    def card_path(self) -> Path:
        return self.root / self.CARD

    def split_path(self, split: str) -> Path:
        """The file of ``split``: ``train``, ``eval`` (generalization: held-out sources) or
        ``eval_knowledge`` (knowledge injection: new questions about facts the training set covers)."""
        paths = {"train": self.train_path, "eval": self.eval_path, "eval_knowledge": self.eval_knowledge_path}
        if split not in paths:
            raise ValueError(f"split must be one of {sorted(paths)}, not {split!r}")
        return paths[split]

    def read(self, split: str) -> list[InstructionItem]:
        """The items of ``split``; ``eval_knowledge`` is optional (``[]`` when its file is absent)."""
        path = self.split_path(split)
        if split == "eval_knowledge" and not path.is_file():
            return []
        return read_jsonl(path, InstructionItem)

    def write(self, split: str, items: list[InstructionItem]) -> int:
        return write_jsonl(self.split_path(split), items)


@dataclass(frozen=True)
class ModelDir(Artifact):
    """The train stage's output: the LoRA adapter (with its metadata), optional merge, checkpoints."""

    ADAPTER_DIR: ClassVar[str] = "adapter"
    ADAPTER_META: ClassVar[str] = "ragtune_adapter.json"
    MERGED_DIR: ClassVar[str] = "merged"
    CHECKPOINTS_DIR: ClassVar[str] = "checkpoints"
    REPORT: ClassVar[str] = "metrics.json"

    @property
    def adapter_dir(self) -> Path:
        return self.root / self.ADAPTER_DIR

    @property
    def merged_dir(self) -> Path:
        return self.root / self.MERGED_DIR

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / self.CHECKPOINTS_DIR


@dataclass(frozen=True)
class EvaluationDir(Artifact):
    """The evaluate stage's output: per-item scores and verdicts, the metrics, the HTML report."""

    SCORES: ClassVar[str] = "scores.jsonl"
    PAIRWISE: ClassVar[str] = "pairwise.jsonl"
    REPORT: ClassVar[str] = "metrics.json"
    HTML: ClassVar[str] = "report.html"

    @property
    def scores_path(self) -> Path:
        return self.root / self.SCORES

    @property
    def pairwise_path(self) -> Path:
        return self.root / self.PAIRWISE

    @property
    def html_path(self) -> Path:
        return self.root / self.HTML


@dataclass(frozen=True)
class DecisionDir(Artifact):
    """The registry stage's output: the promotion decision with the version and the MLflow run."""

    REPORT: ClassVar[str] = "decision.json"


@dataclass(frozen=True)
class ServingDir(Artifact):
    """``ragtune deploy``'s output: the serving object pinned to one version, a kustomization, a report.

    The folder is what gets committed for Argo CD: ``kubectl kustomize`` (or Argo CD) builds it as is.
    """

    MANIFEST: ClassVar[str] = "serving.yaml"
    KUSTOMIZATION: ClassVar[str] = "kustomization.yaml"
    REPORT: ClassVar[str] = "deploy.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def kustomization_path(self) -> Path:
        return self.root / self.KUSTOMIZATION
