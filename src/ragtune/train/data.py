"""From ``train.jsonl``/``eval.jsonl`` to token ids with loss on assistant tokens only.

Each :class:`~ragtune.core.records.InstructionItem` carries its conversation as chat ``messages``.
The tokenizer's chat template renders it; every token outside an assistant turn gets label -100, so
the loss is taken on the answers (and the template's end-of-turn tokens after them) only.

An assistant turn's tokens are found by rendering the conversation up to that turn with
``add_generation_prompt=True`` (the prompt) and up to the end of the turn: when the prompt's tokens
are a prefix of the whole conversation's tokens (true for templates whose turn markers are special
tokens, e.g. SmolLM2's ChatML or Mistral's ``[INST]``), the turn is the token range between the
two. Otherwise the character spans of the turns are mapped to tokens through the fast tokenizer's
offsets, which holds for any template that renders the answer text verbatim.

Batches are packed by default (see :func:`make_collator`): no token is spent on padding. With
``train.packing`` off they are padded to their longest sequence (padding to ``max_seq_len`` is about
3x slower on CPU).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jinja2 import TemplateError

from ragtune.core.artifacts import DatasetDir
from ragtune.core.errors import InputError
from ragtune.core.records import InstructionItem, read_jsonl
from ragtune.core.reports.train import SkippedItem

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
TRAIN_FILE = DatasetDir.TRAIN
EVAL_FILE = DatasetDir.EVAL

Method = Literal["prefix", "offsets"]
Messages = Sequence[dict[str, str]]


class SkipItem(ValueError):
    """This conversation cannot become a training example; the message says why."""


@dataclass
class Splits:
    """Instruction items of both splits (eval may be empty when eval.jsonl is absent)."""

    train: list[InstructionItem]
    eval: list[InstructionItem]
    sha256: str


@dataclass
class Encoded:
    examples: list[dict[str, list[int]]]
    skipped: list[SkippedItem] = field(default_factory=list)


def train_file(dataset_dir: Path) -> Path:
    """``dataset_dir/train.jsonl``, which must exist."""
    path = dataset_dir / TRAIN_FILE
    if not path.is_file():
        raise InputError(f"{path}: file not found (the synth stage writes it)")
    return path


def read_splits(dataset_dir: Path) -> Splits:
    """Read and validate both splits; train.jsonl is required, eval.jsonl optional."""
    train_path, eval_path = train_file(dataset_dir), dataset_dir / EVAL_FILE
    train_items = read_jsonl(train_path, InstructionItem)
    if not train_items:
        raise InputError(f"{train_path}: no instruction items to train on")
    eval_items = read_jsonl(eval_path, InstructionItem) if eval_path.is_file() else []
    return Splits(train_items, eval_items, dataset_sha256(dataset_dir))


def dataset_sha256(dataset_dir: Path) -> str:
    """SHA-256 over the bytes of train.jsonl followed by eval.jsonl (when present)."""
    digest = hashlib.sha256()
    for name in (TRAIN_FILE, EVAL_FILE):
        path = dataset_dir / name
        if path.is_file():
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _render(tokenizer: PreTrainedTokenizerBase, messages: Messages, generation_prompt: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=generation_prompt
        )
    except (TemplateError, ValueError) as err:  # templates raise on roles they do not accept
        raise SkipItem(f"the chat template refused the conversation: {err}") from None
    if not isinstance(text, str):
        raise SkipItem("the chat template did not render text")
    return text


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    # The template writes its own special tokens (BOS included where the model has one).
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _turn_texts(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> list[tuple[str, str]]:
    """(prompt text, text through the end of the turn) for every assistant turn."""
    return [
        (_render(tokenizer, messages[:i], True), _render(tokenizer, messages[: i + 1], False))
        for i, message in enumerate(messages)
        if message.get("role") == "assistant"
    ]


def _labels_by_prefix(
    tokenizer: PreTrainedTokenizerBase, ids: list[int], turns: list[tuple[str, str]]
) -> list[int] | None:
    """Labels from token prefixes, or None when a prompt's tokens are not a prefix of ``ids``."""
    labels = [IGNORE_INDEX] * len(ids)
    for prompt_text, turn_text in turns:
        prompt_ids, turn_ids = _ids(tokenizer, prompt_text), _ids(tokenizer, turn_text)
        start, end = len(prompt_ids), len(turn_ids)
        if ids[:start] != prompt_ids or ids[:end] != turn_ids or end <= start:
            return None
        labels[start:end] = ids[start:end]
    return labels


def _labels_by_offsets(
    tokenizer: PreTrainedTokenizerBase, text: str, messages: Messages, turns: list[tuple[str, str]]
) -> tuple[list[int], list[int]]:
    """Token ids and labels from the character spans of the assistant turns."""
    if not tokenizer.is_fast:
        raise SkipItem("chat template breaks the token prefix property and the tokenizer has no offsets")
    spans = []
    answers = [m.get("content", "") for m in messages if m.get("role") == "assistant"]
    cursor = 0
    for (prompt_text, turn_text), answer in zip(turns, answers, strict=True):
        if text.startswith(turn_text) and turn_text.startswith(prompt_text) and turn_text != prompt_text:
            start, end = len(prompt_text), len(turn_text)
        else:  # the template rewrites earlier turns: find the answer text itself
            start = text.find(answer, cursor)
            if not answer or start < 0:
                raise SkipItem("the chat template does not render the assistant answer verbatim")
            end = start + len(answer)
        spans.append((start, end))
        cursor = end
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    labels = [  # a token overlapping an answer is learned (e.g. " According" with its leading space)
        token if any(begin < end and stop > start for start, end in spans) else IGNORE_INDEX
        for token, (begin, stop) in zip(ids, encoding["offset_mapping"], strict=True)
    ]
    return ids, labels


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    max_seq_len: int,
    method: Method | None = None,
) -> dict[str, list[int]]:
    """``input_ids``, ``attention_mask`` and ``labels`` (-100 outside assistant turns), truncated.

    ``method`` forces one way of finding the assistant tokens; by default the token-prefix way is
    used where it holds and the offsets way otherwise. Raises :class:`SkipItem` with a reason.
    """
    if not messages or messages[-1].get("role") != "assistant":
        raise SkipItem("the conversation does not end with an assistant message")
    text = _render(tokenizer, messages, False)
    turns = _turn_texts(tokenizer, messages)
    labels: list[int] | None = None
    if method != "offsets":
        ids = _ids(tokenizer, text)
        labels = _labels_by_prefix(tokenizer, ids, turns)
        if labels is None and method == "prefix":
            raise SkipItem("the chat template's prompt tokens are not a prefix of the conversation's")
    if labels is None:
        ids, labels = _labels_by_offsets(tokenizer, text, messages, turns)
    ids, labels = ids[:max_seq_len], labels[:max_seq_len]
    if all(label == IGNORE_INDEX for label in labels):
        raise SkipItem(f"no assistant tokens within max_seq_len={max_seq_len} (the prompt fills it)")
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def encode_items(
    tokenizer: PreTrainedTokenizerBase, items: Sequence[InstructionItem], max_seq_len: int, split: str
) -> Encoded:
    """Encode every item; the ones that cannot be used are returned as skipped with their reason."""
    from tqdm import tqdm

    encoded = Encoded(examples=[])
    for item in tqdm(items, desc=f"tokenizing {split}", unit="item", leave=False):
        try:
            encoded.examples.append(encode_conversation(tokenizer, item.messages, max_seq_len))
        except SkipItem as why:
            encoded.skipped.append(SkippedItem(split=split, item_id=item.item_id, reason=str(why)))
    return encoded


def make_collator(tokenizer: PreTrainedTokenizerBase, packing: bool = True) -> Any:
    """The batch maker: packed (no padding at all) by default, else padded to each batch's longest.

    Packed: the batch's sequences are concatenated into one row whose ``position_ids`` restart at 0
    for every sequence (``DataCollatorWithFlattening``); with no ``attention_mask``, transformers'
    sdpa and eager attention read those restarts as sequence boundaries and mask attention across
    them (``masking_utils.find_packed_sequence_indices``), flash-attention uses them natively. The
    packed batch also says ``use_cache=False`` (with a KV cache the mask ignores the restarts). The
    first label of each sequence becomes -100, so no sequence learns to predict the next one's
    first token; it is a prompt token, ignored anyway. The same examples make each step as when
    padded, and the loss is the same mean over the same answer tokens: only the padding is gone.

    Padded: pad id for input_ids, 0 for the mask, -100 for labels (for models whose attention does
    not honour packed positions).
    """
    if packing:
        from transformers import DataCollatorWithFlattening

        class PackedCollator(DataCollatorWithFlattening):
            def __call__(self, features: Any, return_tensors: Any = None, separator_id: Any = None) -> Any:
                batch = super().__call__(features, return_tensors, separator_id)
                # with a KV cache the masks ignore the position restarts: training needs none
                batch["use_cache"] = False
                return batch

        return PackedCollator(return_position_ids=True, separator_id=IGNORE_INDEX, return_tensors="pt")
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(
        tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX, return_tensors="pt"
    )


def padding_share(lengths: Sequence[int], batch_size: int, packing: bool) -> float:
    """Fraction of the tokens fed to the model that are padding, batching ``lengths`` in order."""
    if packing or not lengths:
        return 0.0
    batches = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    fed = sum(max(batch) * len(batch) for batch in batches)
    return 1.0 - sum(lengths) / fed
