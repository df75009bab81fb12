"""``ragtune serve`` throughput, latency and memory against bare transformers generation, same run.

The packaged SmolLM2-135M-Instruct with a LoRA adapter (r=8, q/v, peft's initialisation) is
registered in a local sqlite MLflow store and served by the real CLI (``ragtune serve`` in a child
process, so its peak RSS is its own). All generation is greedy, on the same prompts, with the same
``max_tokens``, loop stopping off (bare ``generate`` has none), one torch thread on both sides.

* ``endpoint_vs_bare`` — completion tokens/s of the endpoint taking the prompts one at a time
  (openai client, sequential) ÷ tokens/s of ``model.generate`` on the same model in this process,
  one prompt at a time. Goal ≥ 0.9: what HTTP, the queue and our decoder cost.
* ``concurrent_vs_sequential`` — aggregate completion tokens/s with ``--clients`` clients at once
  (each sends its prompts back to back) ÷ the sequential endpoint rate. Goal ≥ 2: requests in
  flight are batched.
* ``ttft_ms`` — median time to the first streamed content token, one client (n in the table).
* ``peak_rss_mb`` — the server process's peak resident memory.

Usage::

    python benchmarks/serve.py [--prompts 8] [--max-tokens 48] [--clients 8] [--ttft-n 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    "What are the core symptoms of panic disorder?",
    "How is generalized anxiety disorder usually treated?",
    "What is the difference between sadness and major depression?",
    "Describe cognitive behavioural therapy in two sentences.",
    "What questions help assess sleep problems?",
    "Why does exposure therapy work for phobias?",
    "What are common side effects of SSRIs?",
    "How can a clinician screen for suicidal thoughts?",
]


def make_adapter(folder: Path) -> Path:
    """A LoRA adapter on the packaged SmolLM2, with the metadata the train stage writes."""
    from peft import LoraConfig, get_peft_model

    from ragtune.core.modelload import AdapterMeta, write_adapter_meta
    from ragtune.core.models import load_causal_lm, resolve_causal_lm_path

    path = resolve_causal_lm_path("smollm2")
    model, tokenizer = load_causal_lm(path)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    adapter = folder / "adapter"
    get_peft_model(model, lora).save_pretrained(str(adapter))
    tokenizer.save_pretrained(adapter)
    meta = AdapterMeta(
        base_model="smollm2",
        base_model_path=path,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        qlora=False,
        max_seq_len=256,
        dataset_sha256="0" * 64,
        global_step=0,
        dtype="float32",
        deepspeed="off",
    )
    write_adapter_meta(adapter, meta)
    return adapter


def register(config: Any, adapter: Path) -> int:
    from mlflow import MlflowClient

    from ragtune.registry import register_model, start_pipeline_run, tracking_uri

    info = register_model(config, start_pipeline_run(config, "bench-serve"), adapter, None, {})
    uri = tracking_uri(config)
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(
        info.name, "champion", str(info.version)
    )
    return info.version


def bare_rate(adapter: Path, prompts: list[str], max_tokens: int) -> dict[str, float]:
    """Tokens/s of ``generate`` (greedy), one prompt at a time, base + adapter loaded as the server does."""
    import torch

    from ragtune.core.modelload import load_tuned_model

    torch.set_num_threads(1)
    model, tokenizer = load_tuned_model(adapter)
    tokens, started = 0, time.perf_counter()
    for prompt in prompts:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
        tokens += int(out.shape[1] - ids["input_ids"].shape[1])
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds, "rate": tokens / seconds}


def start_server(config_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "ragtune.cli",
        "--quiet",
        "serve",
        "--config",
        str(config_path),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"ragtune serve exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("ragtune serve did not start in 300 s")


async def endpoint_rates(
    url: str, model: str, prompts: list[str], max_tokens: int, clients: int, ttft_n: int
) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)

    async def ask(prompt: str) -> int:
        reply = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0
        )
        return reply.usage.completion_tokens if reply.usage else 0

    await ask(prompts[0])  # warm-up
    started = time.perf_counter()
    sequential = [await ask(p) for p in prompts]
    seq_s = time.perf_counter() - started

    async def worker(mine: list[str]) -> int:
        return sum([await ask(p) for p in mine])

    shares = [prompts[i::clients] or prompts[:1] for i in range(clients)]
    started = time.perf_counter()
    concurrent = await asyncio.gather(*(worker(share) for share in shares))
    conc_s = time.perf_counter() - started

    ttfts = []
    for prompt in prompts[:ttft_n]:
        sent = time.perf_counter()
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        first = None
        async for event in stream:
            if first is None and event.choices and event.choices[0].delta.content:
                first = time.perf_counter() - sent
        ttfts.append((first or 0.0) * 1000)
    await client.close()
    return {
        "seq_tokens": sum(sequential),
        "seq_s": seq_s,
        "conc_tokens": sum(concurrent),
        "conc_s": conc_s,
        "conc_requests": sum(len(s) for s in shares),
        "ttft_ms": ttfts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ttft-n", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    import yaml

    from ragtune.core.config import build_config
    from tests.conftest import free_port

    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    with tempfile.TemporaryDirectory(prefix="ragtune-bench-serve-") as tmp:
        root = Path(tmp)
        data = {
            "run": {"name": "bench-serve", "root": str(root / "runs")},
            "registry": {"model_name": "bench-serve"},
            "llm": {"local_stop_repeats": False},
            "serve": {
                "threads": 1,
                "batch_size": args.clients,
                "max_tokens_limit": max(2048, args.max_tokens),
            },
        }
        config = build_config(data)
        (root / "ragtune.yaml").write_text(yaml.safe_dump(data))
        adapter = make_adapter(root)
        register(config, adapter)
        bare = bare_rate(adapter, prompts, args.max_tokens)
        port = free_port()
        server = start_server(root / "ragtune.yaml", port)
        try:
            measured = asyncio.run(
                endpoint_rates(
                    f"http://127.0.0.1:{port}/v1",
                    "bench-serve",
                    prompts,
                    args.max_tokens,
                    args.clients,
                    args.ttft_n,
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=60)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    seq_rate = measured["seq_tokens"] / measured["seq_s"]
    conc_rate = measured["conc_tokens"] / measured["conc_s"]
    ttft = statistics.median(measured["ttft_ms"])
    rows = [
        ("bare generate, 1 at a time", len(prompts), bare["tokens"], bare["seconds"], bare["rate"]),
        ("endpoint, 1 at a time", len(prompts), measured["seq_tokens"], measured["seq_s"], seq_rate),
        (
            f"endpoint, {args.clients} clients",
            measured["conc_requests"],
            measured["conc_tokens"],
            measured["conc_s"],
            conc_rate,
        ),
    ]
    print(f"{'variant':<30} {'requests':>8} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    for name, n, tokens, seconds, rate in rows:
        print(f"{name:<30} {n:>8} {tokens:>7} {seconds:>8.1f} {rate:>9.2f}")
    print(
        f"time to first token: median {ttft:.0f} ms (n={len(measured['ttft_ms'])}: {json.dumps([round(t) for t in measured['ttft_ms']])})"
    )
    print(
        f"endpoint_vs_bare={seq_rate / bare['rate']:.3f} concurrent_vs_sequential={conc_rate / seq_rate:.3f}"
        f" ttft_ms={ttft:.0f} peak_rss_mb={peak_rss_mb:.0f} n_prompts={len(prompts)} max_tokens={args.max_tokens}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
