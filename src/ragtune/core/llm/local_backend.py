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
import json
import threading
from typing import TYPE_CHECKING, Any, cast

from ragtune.core.cache import ContentCache
from ragtune.core.config import LLMEndpoint
from ragtune.core.llm.base import ChatModel, ChatRequest, ChatResponse, LLMCallError, LLMFailure
from ragtune.core.llm.jsonparse import close_string_value, has_complete_object, opens_string_value
from ragtune.core.llm.ledger import TokenLedger
from ragtune.core.records import sha256_hex

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_BATCH_SIZE = 8

_LOADED: dict[str, tuple[PreTrainedModel, PreTrainedTokenizerBase]] = {}
_LOAD_LOCK = threading.Lock()
_GENERATE_LOCK = threading.Lock()  # one generate at a time per process: the model is shared


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
    threads: int | None = 1

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

    def generate_batch(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """One ``generate`` call for ``requests`` (they share temperature and ``max_tokens``).

        The reply is ``prefill + continuation``; without a prefill it is trimmed. JSON rows stop once
        their object closes; rows prefilled into a string value ({"question": ") are constrained:
        they end where that string closes and the object is closed for them, so a weak model cannot
        wander into extra keys (SmolLM2 does, in most replies, without this).
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        model, tokenizer = self._model()
        prefills = [r.prefill or "" for r in requests]
        prompts = [
            str(tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False))
            + prefill
            for r, prefill in zip(requests, prefills, strict=True)
        ]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = {k: v.to(model.device) for k, v in encoded.items()}
        prompt_len = encoded["input_ids"].shape[1]
        json_rows = [i for i, r in enumerate(requests) if r.json_mode or r.json_schema is not None]
        value_rows = {i for i in json_rows if opens_string_value(prefills[i])}
        eos = model.generation_config.eos_token_id
        stop_ids = set(eos if isinstance(eos, list) else [eos]) | {
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
        }
        stop_ids.discard(None)

        class JsonClosed(StoppingCriteria):
            """Stop a JSON row once its object (or its constrained string value) is closed."""

            def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
                done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
                for row in json_rows:
                    generated = str(tokenizer.decode(input_ids[row, prompt_len:], skip_special_tokens=True))
                    if row in value_rows:
                        done[row] = close_string_value(prefills[row], generated) is not None
                    else:
                        done[row] = has_complete_object(prefills[row] + generated)
                return done  # type: ignore[return-value]

        first = requests[0]
        options: dict[str, Any] = {"max_new_tokens": first.max_tokens, "pad_token_id": tokenizer.pad_token_id}
        if first.temperature > 0:
            options.update(do_sample=True, temperature=first.temperature)
        else:
            options.update(do_sample=False)
        if json_rows:
            options["stopping_criteria"] = StoppingCriteriaList([JsonClosed()])
        batch_seed = int(sha256_hex(json.dumps([r.seed for r in requests]) + prompts[0])[:8], 16)
        with _GENERATE_LOCK, torch.inference_mode():
            if self.threads:
                torch.set_num_threads(self.threads)
            torch.manual_seed((self.seed + batch_seed) % (2**31))
            output = cast(Any, model).generate(**encoded, **options)
        responses = []
        for row in range(len(requests)):
            tokens = output[row, prompt_len:].tolist()
            length = next((i for i, t in enumerate(tokens) if t in stop_ids), len(tokens))
            continuation = str(tokenizer.decode(tokens[:length], skip_special_tokens=True))
            if row in value_rows:
                continuation = close_string_value(prefills[row], continuation) or continuation
            text = prefills[row] + continuation if prefills[row] else continuation.strip()
            responses.append(
                ChatResponse(
                    text=text,
                    model=self.name,
                    prompt_tokens=int(encoded["attention_mask"][row].sum()),
                    completion_tokens=length,
                )
            )
        return responses


class LocalChat(TransformersChat):
    """The packaged SmolLM2 (or any local causal LM folder), loaded once per process."""

    def __init__(
        self,
        endpoint: LLMEndpoint,
        *,
        cache: ContentCache | None = None,
        ledger: TokenLedger | None = None,
        threads: int = 1,
        seed: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        super().__init__(
            f"local:{endpoint.model}",
            cache=cache,
            ledger=ledger,
            seed=seed,
            default_temperature=endpoint.temperature,
            default_max_tokens=endpoint.max_tokens,
        )
        self.endpoint = endpoint
        self.model_name = endpoint.model
        self.threads = threads
        self.batch_size = batch_size
        self.concurrency = 1  # the CPU is the bottleneck: one batch at a time

    def _model(self) -> tuple[Any, Any]:
        return load_local_model(self.model_name)
