"""The packaged SmolLM2-135M-Instruct (or any local causal LM folder) answering on the CPU.

The model is loaded lazily on first use, once per process (``ragtune.core.models.load_causal_lm``
converts the packaged GGUF once into the model cache). Requests are answered in batches: grouped by
temperature and ``max_tokens``, sorted by prompt length so padding stays small, then generated
together with left padding. The prompt is the model's chat template plus the request's prefill, and
the reply is ``prefill + continuation``. Greedy at temperature 0, sampling otherwise; each batch is
seeded from the request seeds so a batch regenerates the same text.

The model is weak at JSON; a prefill such as ``{"question": "`` is what makes it usable. For JSON
requests, generation of a row stops as soon as its JSON object is closed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ragtune.core.cache import ContentCache
from ragtune.core.config import LLMEndpoint
from ragtune.core.llm.base import ChatModel, ChatRequest, ChatResponse, LLMCallError, LLMFailure
from ragtune.core.llm.jsonparse import (
    close_string_value,
    force_close_string_value,
    has_complete_object,
    opens_string_value,
)
from ragtune.core.llm.ledger import TokenLedger
from ragtune.core.records import sha256_hex

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_BATCH_SIZE = 16
MIN_SHARED_PREFIX = 8  # tokens: below this, computing a shared prefix once saves nothing measurable
REPEAT_SPAN = 12  # tokens: a run this long seen twice in one reply is a loop
TOP_K = 50  # sampling keeps the 50 likeliest tokens, as transformers' generate does by default

_LOADED: dict[str, tuple[PreTrainedModel, PreTrainedTokenizerBase]] = {}
_LOAD_LOCK = threading.Lock()
_GENERATE_LOCK = threading.Lock()  # one generate at a time per process: the model is shared

TokenCallback = Callable[[int, list[int]], None]
"""``(row, tokens generated so far)``, called after each new token of a row."""


def load_local_model(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer for ``name``, loaded once per process."""
    with _LOAD_LOCK:
        if name not in _LOADED:
            from ragtune.core.models import load_causal_lm

            model, tokenizer = load_causal_lm(name)
            model.eval()
            tokenizer.padding_side = "left"
            _LOADED[name] = (model, tokenizer)
        return _LOADED[name]


class TransformersChat(ChatModel):
    """Batched generation with an in-process transformers causal LM; subclasses say how to get it.

    The local backend (packaged SmolLM2) and the evaluation's base/tuned answerers are both this:
    one batching plan, one ``generate`` call per batch, one way of cutting replies.
    """

    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int | None = 1  # None: one per available core
    stop_repeats: bool = True

    def _model(self) -> tuple[Any, Any]:
        """The (model, tokenizer) to generate with; the tokenizer pads on the left."""
        raise NotImplementedError

    def _plan_batches(self, requests: list[ChatRequest]) -> list[list[int]]:
        """Same temperature and max_tokens per batch, similar prompt lengths together."""

        def length(i: int) -> int:
            r = requests[i]
            return sum(len(m.get("content", "")) for m in r.messages) + len(r.prefill or "")

        order = sorted(
            range(len(requests)), key=lambda i: (requests[i].temperature, requests[i].max_tokens, length(i))
        )
        batches: list[list[int]] = []
        for i in order:
            last = batches[-1] if batches else None
            if (
                last is not None
                and len(last) < self.batch_size
                and requests[last[0]].temperature == requests[i].temperature
                and requests[last[0]].max_tokens == requests[i].max_tokens
            ):
                last.append(i)
            else:
                batches.append([i])
        return batches

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        (outcome,) = await self._complete_batch([request])
        if isinstance(outcome, LLMFailure):
            raise LLMCallError(outcome.reason, outcome.attempts)
        return outcome

    async def _complete_batch(self, requests: list[ChatRequest]) -> list[ChatResponse | LLMFailure]:
        return list(await asyncio.to_thread(self.generate_batch, requests))

    def generate_batch(
        self, requests: list[ChatRequest], on_token: TokenCallback | None = None
    ) -> list[ChatResponse]:
        """Generate replies for ``requests`` together (they share a temperature; each row stops at its
        own ``max_tokens``). ``on_token(row, tokens)`` sees every row's tokens as they grow (a server
        streams from it); it runs on the generating thread, so it must be quick.

        The reply is ``prefill + continuation``; without a prefill it is trimmed. JSON rows stop once
        their object closes; rows prefilled into a string value ({"question": ") are constrained:
        they end where that string closes and the object is closed for them, so a weak model cannot
        wander into extra keys (SmolLM2 does, in most replies, without this). A row that reaches the
        token cap, or starts repeating itself (``stop_repeats``), inside such a value has the value
        closed where it stopped, so the caller sees the text rather than a parse error.
        """
        model, tokenizer = self._model()
        prefills = [r.prefill or "" for r in requests]
        prompts = [
            str(tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False))
            + prefill
            for r, prefill in zip(requests, prefills, strict=True)
        ]
        json_rows = {i for i, r in enumerate(requests) if r.json_mode or r.json_schema is not None}
        value_rows = {i for i in json_rows if opens_string_value(prefills[i])}
        eos = model.generation_config.eos_token_id
        stop_ids = set(eos if isinstance(eos, list) else [eos]) | {
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
        }
        stop_ids.discard(None)

        def finished(row: int, tokens: list[int]) -> bool:
            if on_token is not None:
                on_token(row, tokens)
            if tokens[-1] in stop_ids or len(tokens) >= requests[row].max_tokens:
                return True
            if self.stop_repeats and repeats_itself(tokens):
                return True
            if row not in json_rows:
                return False
            generated = str(tokenizer.decode(tokens, skip_special_tokens=True))
            if row in value_rows:
                return close_string_value(prefills[row], generated) is not None
            return has_complete_object(prefills[row] + generated)

        first = requests[0]
        batch_seed = int(sha256_hex(json.dumps([r.seed for r in requests]) + prompts[0])[:8], 16)
        ids = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        shared = shared_prefix_length(ids) if len(ids) > 1 else 0
        shared = shared if shared >= MIN_SHARED_PREFIX else 0
        suffixes = tokenizer.pad({"input_ids": [row[shared:] for row in ids]}, return_tensors="pt")
        with _GENERATE_LOCK:
            threads = resolve_threads(self.threads)
            generated = decode_rows(
                model,
                suffixes["input_ids"],
                suffixes["attention_mask"],
                prefix_ids=ids[0][:shared],
                max_new_tokens=max(r.max_tokens for r in requests),
                temperature=first.temperature,
                seed=(self.seed + batch_seed) % (2**31),
                threads=threads,
                finished=finished,
            )
        responses = []
        for row, tokens in enumerate(generated):
            length = next((i for i, t in enumerate(tokens) if t in stop_ids), len(tokens))
            continuation = str(tokenizer.decode(tokens[:length], skip_special_tokens=True))
            if row in value_rows:
                continuation = force_close_string_value(prefills[row], continuation)
            text = prefills[row] + continuation if prefills[row] else continuation.strip()
            responses.append(
                ChatResponse(
                    text=text,
                    model=self.name,
                    prompt_tokens=len(ids[row]),
                    completion_tokens=length,
                )
            )
        return responses


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's CPU set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """``threads`` as configured, or one per available core when unset (``llm.local_threads: null``)."""
    return threads if threads else available_cores()


def repeats_itself(tokens: Sequence[int], span: int = REPEAT_SPAN) -> bool:
    """Whether the last ``span`` tokens already occurred, in the same order, earlier in ``tokens``.

    A small model that loops ("... and sleep. Sleep is ... and sleep. Sleep is ...") keeps writing
    to the token cap; this stops the row at the first repeated run. ``span`` is long enough that
    ordinary phrases ("of the", "such as") never match.
    """
    if len(tokens) < 2 * span:
        return False
    tail = list(tokens[-span:])
    head = list(tokens[:-1])
    first = tail[0]
    for start in range(len(head) - span + 1):
        if head[start] == first and head[start : start + span] == tail:
            return True
    return False


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    shortest = min(len(row) for row in rows)
    length = 0
    while length < shortest - 1 and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def decode_rows(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    *,
    prefix_ids: Sequence[int] = (),
    max_new_tokens: int,
    temperature: float,
    seed: int,
    threads: int,
    finished: Callable[[int, list[int]], bool],
) -> list[list[int]]:
    """Greedy (temperature 0) or sampled (top-k 50) decoding of a left-padded batch, row by row done.

    Unlike ``generate``, which steps every row until the last one finishes, a row leaves the batch
    (and its KV cache) as soon as ``finished(row, tokens)`` says so or it reaches
    ``max_new_tokens``, so a batch costs what its rows generate, not its longest row times its size.
    ``prefix_ids`` are tokens every row's prompt starts with (the template's instructions): their
    KV cache is computed once and copied to every row, and ``input_ids`` hold only the rest of each
    prompt (left-padded). On a CPU the prompts are most of the work (a synthesis request reads ~10
    prompt tokens per token it writes), so this saves ``(rows - 1) * len(prefix_ids)`` tokens of it.
    Returns the generated token ids of every row (the finishing token included).
    """
    import torch
    from transformers import DynamicCache

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    rows = input_ids.shape[0]
    out: list[list[int]] = [[] for _ in range(rows)]
    active = torch.arange(rows)
    mask = attention_mask.to(model.device)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    # transformers 5.x renamed forward's ``past_key_values`` to ``cache`` (the old name warns)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model passes it on
    cache_kwarg = "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"
    step_input = input_ids.to(model.device)
    with torch.inference_mode():
        if prefix_ids:
            prefix = torch.tensor([list(prefix_ids)], device=model.device)
            model(input_ids=prefix, use_cache=True, logits_to_keep=1, **{cache_kwarg: cache})
            cache.batch_repeat_interleave(rows)
            positions = positions + prefix.shape[1]
            mask = torch.cat([mask.new_ones((rows, prefix.shape[1])), mask], dim=-1)
        for _ in range(max_new_tokens):
            logits = (
                model(
                    input_ids=step_input,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    logits_to_keep=1,  # the prompt's other positions need no logits
                    **{cache_kwarg: cache},
                )
                .logits[:, -1, :]
                .float()
            )
            if temperature > 0:
                logits = logits / temperature
                top = torch.topk(logits, min(TOP_K, logits.shape[-1]))
                choice = torch.multinomial(torch.softmax(top.values, dim=-1).cpu(), 1, generator=generator)
                next_tokens = top.indices.gather(-1, choice.to(top.indices.device)).squeeze(-1)
            else:
                next_tokens = logits.argmax(dim=-1)
            keep: list[int] = []
            for position, (row, token) in enumerate(zip(active.tolist(), next_tokens.tolist(), strict=True)):
                out[row].append(int(token))
                if not finished(row, out[row]) and len(out[row]) < max_new_tokens:
                    keep.append(position)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep)
                cache.batch_select_indices(index.to(model.device))
                active, next_tokens = active[index], next_tokens[index.to(next_tokens.device)]
                mask, positions = mask[index], positions[index]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            positions = positions[:, -1:] + 1
            step_input = next_tokens.unsqueeze(-1)
    return out


class LocalChat(TransformersChat):
    """The packaged SmolLM2 (or any local causal LM folder), loaded once per process."""

    def __init__(
        self,
        endpoint: LLMEndpoint,
        *,
        cache: ContentCache | None = None,
        ledger: TokenLedger | None = None,
        threads: int | None = None,
        seed: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        stop_repeats: bool = True,
    ) -> None:
        super().__init__(f"local:{endpoint.model}", cache=cache, ledger=ledger, seed=seed, endpoint=endpoint)
        self.endpoint = endpoint
        self.model_name = endpoint.model
        self.threads = threads
        self.batch_size = batch_size
        self.stop_repeats = stop_repeats
        self.concurrency = 1  # the CPU is the bottleneck: one batch at a time

    def _model(self) -> tuple[Any, Any]:
        return load_local_model(self.model_name)
