"""LLM request throughput and the synthesis stage's incremental reruns.

* ``efficiency`` — ``chat_many`` of ``--requests`` distinct requests against a local
  OpenAI-compatible server (``tests/llm/fake_openai.py`` in a child process: a thread per
  connection, a fixed simulated latency of ``--latency-ms``) at 16-way concurrency: achieved requests/s divided by the ideal
  ``concurrency / latency``. ``speedup`` — that throughput over the same run at concurrency 1.
  Everything the real client does is in the path (``openai.AsyncOpenAI``, HTTP, JSON, retries
  armed, ledger, progress); the response cache is off so every request is sent. Two reference
  clients send the same requests at the same concurrency with nothing of ragtune in the path:
  the openai SDK alone (``efficiency_vs_sdk`` is ragtune's efficiency over the SDK's) and bare
  aiohttp, which shows how close to 1.0 this server and machine let any Python client get.
* ``adaptive_vs_oracle`` / ``adaptive_vs_overrun`` — the same ``--capacity-requests`` requests
  against a server that serves at most ``C = --capacity`` requests at once with latency
  ``--latency-ms`` and answers 429 with ``Retry-After: --retry-after-ms`` beyond that (another
  ``FakeOpenAI`` process, ``capacity=C``). Goodput (answered requests/s) over the ideal ``C / L``
  for a fixed concurrency of 4·C with each ``Retry-After`` honoured by the request that got it
  (the overrun: the client before issue 12, when a user sets concurrency high), the same with
  the endpoint-wide pause of today's client (``adaptive_vs_fixed_paused``), a fixed concurrency
  of C (the oracle, who knows the capacity) and adaptive concurrency with a ceiling of 4·C.
  Failed items (retries exhausted) are counted, not hidden. Goal: adaptive ≥ 0.9 of the oracle
  and ≥ 2× the overrun, with zero failed items. Goodput counts the first pass only, so a mode
  that loses items fast scores well on it; ``completion_vs_overrun`` also resends the failed
  requests (as resuming the run would) until every one is answered, and compares requests /
  total seconds: what the user waits for a complete dataset.
* ``incremental_calls`` / ``incremental_time`` — ``ragtune.synth.synthesize`` on 20 generated
  documents (index built with ``ragtune.index.run_index``, embeddings and chat from the same
  fake server), then again, sharing the cache, after one document changed: the rerun's chat
  requests and wall time as fractions of the full run's; ``incremental_llm_wait`` is the part of
  the rerun spent waiting on the model (its dependent LLM rounds, one latency each at least, over
  the full run's time), ``incremental_own`` the rest (loads, cache reads, embedding, outputs). ``nan`` (with a note) while
  ``ragtune.synth`` or ``ragtune.index`` cannot be imported.

Throughput runs are repeated ``--repeat`` times and the median counts; the table also shows the
client's CPU time per request and the share of a core the process got (on a busy machine the
client is CPU-starved and efficiency drops with it). Prints a table, then as its last line
``key=value`` pairs.

Usage::

    python benchmarks/synthesis.py [--requests 200] [--latency-ms 50] [--documents 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the table

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.llm.fake_openai

from ragtune.core.llm import ChatModel, ChatRequest, ChatResponse, open_chat_model  # noqa: E402
from ragtune.core.llm.limiter import AdaptiveLimiter  # noqa: E402
from ragtune.core.llm.openai_backend import OpenAIChat  # noqa: E402
from tests.llm.fake_openai import FakeOpenAIProcess, fake_openai_process  # noqa: E402

OVERRUN = "fixed 4C (overrun)"
PAUSED = "fixed 4C, endpoint pause"
ORACLE = "fixed C (oracle)"
ADAPTIVE = "adaptive, ceiling 4C"

TOPICS = [
    "Anxiety",
    "Depression",
    "Sleep",
    "Psychosis",
    "Mania",
    "Attention",
    "Eating",
    "Trauma",
    "Obsessions",
    "Personality",
    "Substance use",
    "Dementia",
    "Delirium",
    "Autism",
    "Grief",
    "Phobias",
    "Somatic symptoms",
    "Dissociation",
    "Suicide risk",
    "Psychopharmacology",
]


def distinct_requests(tag: str, count: int) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": f"{tag} request {i}"}]) for i in range(count)]


def unanswered(model: ChatModel, batch: list[ChatRequest], desc: str) -> list[ChatRequest]:
    """The requests of ``batch`` that one ``chat_many`` could not answer (retries exhausted)."""
    results = model.chat_many(batch, desc=desc)
    return [request for request, out in zip(batch, results, strict=True) if not isinstance(out, ChatResponse)]


def timed_run(model: ChatModel, requests: int, tag: str) -> tuple[float, float, int]:
    """(seconds, client CPU seconds, failed requests) of one ``chat_many``: distinct prompts, no cache."""
    batch = distinct_requests(tag, requests)
    started, cpu = time.perf_counter(), time.process_time()
    failed = len(unanswered(model, batch, tag))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return elapsed, cpu, failed


def measure_throughput(
    server: FakeOpenAIProcess, concurrency: int, requests: int, tag: str
) -> tuple[float, float]:
    """(requests/s, client CPU ms per request) of one ``chat_many`` run: distinct prompts, no cache."""
    model = open_chat_model(server.endpoint(concurrency=concurrency, timeout_s=30.0, max_retries=2))
    elapsed, cpu, failed = timed_run(model, requests, f"c{concurrency}-{tag}")
    if failed:
        raise SystemExit(f"{failed} of {requests} requests failed at concurrency {concurrency}")
    return requests / elapsed, cpu / requests * 1000


async def _bare_run(url: str, concurrency: int, requests: int, tag: str, sdk: bool) -> float:
    """Seconds for ``requests`` chat posts at ``concurrency`` with nothing of ragtune in the path."""
    import aiohttp
    import openai

    gate = asyncio.Semaphore(concurrency)
    bodies = [
        {"model": "fake-model", "messages": [{"role": "user", "content": f"{tag} {i}"}]}
        for i in range(requests)
    ]
    async with aiohttp.ClientSession() as session:
        client = openai.AsyncOpenAI(
            base_url=url,
            api_key="not-needed",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=False),
        )

        async def one(body: dict[str, Any]) -> None:
            async with gate:
                if sdk:
                    await client.post("/chat/completions", cast_to=object, body=body)
                else:
                    async with session.post(f"{url}/chat/completions", json=body) as response:
                        response.raise_for_status()
                        await response.json()

        started = time.perf_counter()
        await asyncio.gather(*(one(body) for body in bodies))
        elapsed = time.perf_counter() - started
        await client.close()
    return elapsed


def measure_bare(
    server: FakeOpenAIProcess, concurrency: int, requests: int, sdk: bool
) -> tuple[float, float]:
    """(requests/s, client CPU ms per request) of the reference clients: the openai SDK alone, or bare aiohttp."""
    started_cpu = time.process_time()
    elapsed = asyncio.run(_bare_run(server.url, concurrency, requests, "sdk" if sdk else "bare", sdk))
    return requests / elapsed, (time.process_time() - started_cpu) / requests * 1000


@dataclass
class CapacityRun:
    goodput: float  # answered requests/s of the first pass over C / L
    failed: int  # requests the first pass lost (retries exhausted)
    concurrency: int  # the level at the end of the first pass
    # requests / (seconds until every one was answered, in as many passes as it took) over C / L
    completion: float
    passes: int
    rejected: int  # 429s the server answered over all passes: the storm the endpoint sees


#: Passes a mode gets to answer every request before its completion counts as never.
MAX_PASSES = 10


def measure_capacity(
    capacity: int, latency_s: float, retry_after_s: float, requests: int
) -> dict[str, CapacityRun]:
    """Per mode, one run against a capacity-C server: the first pass, then resumed until all are answered."""
    # (concurrency, adaptive, Retry-After pauses the whole endpoint)
    modes = {
        OVERRUN: (4 * capacity, False, False),
        PAUSED: (4 * capacity, False, True),
        ORACLE: (capacity, False, True),
        ADAPTIVE: (4 * capacity, True, True),
    }
    ideal = capacity / latency_s
    out: dict[str, CapacityRun] = {}
    with fake_openai_process(latency_s=latency_s, capacity=capacity, retry_after_s=retry_after_s) as server:
        timed_run(open_chat_model(server.endpoint(concurrency=capacity)), 2 * capacity, "warm-up")
        for mode, (concurrency, adaptive, pause_endpoint) in modes.items():
            endpoint = server.endpoint(
                timeout_s=30.0, max_retries=5, concurrency=concurrency, adaptive_concurrency=adaptive
            )
            model = open_chat_model(endpoint)
            assert isinstance(model, OpenAIChat)
            model.limiter = AdaptiveLimiter(concurrency, adaptive=adaptive, pause_endpoint=pause_endpoint)
            batch = distinct_requests(mode, requests)
            rejected_before = server.over_capacity
            started = time.perf_counter()
            pending = unanswered(model, batch, mode)
            first_pass, failed, passes = time.perf_counter() - started, len(pending), 1
            while pending and passes < MAX_PASSES:  # what a user does next: resume, and the failed go again
                pending = unanswered(model, pending, f"{mode}, resumed")
                passes += 1
            everything = time.perf_counter() - started if not pending else math.inf
            out[mode] = CapacityRun(
                goodput=(requests - failed) / first_pass / ideal,
                failed=failed,
                concurrency=model.stats["concurrency"],
                completion=requests / everything / ideal,
                passes=passes,
                rejected=server.over_capacity - rejected_before,
            )
    return out


def cpu_share(seconds: float = 0.5) -> float:
    """Fraction of one core this process gets right now (1.00 on an idle machine)."""
    started, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        pass
    return (time.process_time() - cpu) / (time.perf_counter() - started)


def make_documents(count: int, changed: int | None = None) -> list[Any]:
    from ragtune.core.records import Document, Section, sha256_hex

    documents = []
    for number in range(count):
        topic = TOPICS[number % len(TOPICS)] + ("" if number < len(TOPICS) else f" {number}")
        sections = [Section(section_id="s0", heading=topic, level=1, path=[], text="")]
        for index, aspect in enumerate(["Overview", "Signs", "Course", "Care"], start=1):
            text = (
                f"{aspect} of {topic.lower()}: clinicians describe {topic.lower()} through its {aspect.lower()}, "
                f"which varies between people and over time. Section {index} of document {number} explains "
                f"how {aspect.lower()} is assessed, what families notice first, and which questions help."
            )
            if number == changed and aspect == "Signs":
                text += " A new paragraph was added in the second version of this document."
            sections.append(Section(section_id=f"s{index}", heading=aspect, level=2, path=[topic], text=text))
        body = "".join(s.text for s in sections)
        documents.append(
            Document(
                doc_id=f"doc-{number:02d}",
                source_uri=f"memory://doc-{number:02d}.md",
                sha256=sha256_hex(body),
                title=topic,
                parser="markdown",
                sections=sections,
            )
        )
    return documents


def measure_incremental(
    server: FakeOpenAIProcess, documents: int, workdir: Path
) -> tuple[float, float, float, str]:
    """(calls fraction, time fraction, LLM-wait fraction, note) of a rerun after one of ``documents`` changed.

    The LLM-wait fraction is the rerun's time with requests in flight (``busy_ms`` of its chat
    models) over the full run's wall time: the floor its own work cannot go below, since a
    rerun of a few slots still waits one latency per dependent round (questions, answers,
    repairs, retries).
    """
    try:
        from ragtune.core.artifacts import DocumentsDir
        from ragtune.core.config import build_config
        from ragtune.core.records import write_jsonl
        from ragtune.index import run_index
        from ragtune.synth import run_synth
    except ImportError as err:
        return math.nan, math.nan, math.nan, f"synthesis stage not available ({err})"
    try:
        from tests.synth.responder import synth_responder

        server.set(responder=synth_responder)
    except ImportError:
        pass  # the default responder answers JSON schemas too

    endpoint = server.endpoint(concurrency=16, timeout_s=30.0, temperature=0.7, max_tokens=256)
    config = build_config(
        {
            "run": {"root": str(workdir / "runs"), "seed": 0},
            "cache": {"uri": str(workdir / "cache")},
            "index": {"embedder": {"backend": "openai", "model": "fake-embed", "base_url": server.url}},
            "llm": {"generator": endpoint.model_dump()},
        }
    )
    runs = []
    for version, changed in (("full", None), ("rerun", documents // 3)):
        folder = workdir / version
        folder.mkdir(parents=True)
        docs_path = DocumentsDir(folder).documents_path
        write_jsonl(docs_path, make_documents(documents, changed))
        run_index(config, docs_path, folder / "indexed")
        before = server.chat_count
        started = time.perf_counter()
        report = run_synth(config, docs_path, folder / "indexed", folder / "synth")
        elapsed = time.perf_counter() - started
        rounds = sum(stats.get("rounds", 0) for stats in report.llm_stats.values())
        waited = sum(stats.get("busy_ms", 0) for stats in report.llm_stats.values()) / 1000
        runs.append((server.chat_count - before, elapsed, rounds, waited))
    (full_calls, full_time, _, _), (rerun_calls, rerun_time, _, rerun_wait) = runs
    print(
        f"\n{'synthesis run':<30}{'calls':>7}{'wall s':>9}{'LLM rounds':>12}{'waiting s':>11}{'own work s':>12}"
    )
    for name, (calls, elapsed, rounds, waited) in zip(
        ("full", "1 of 20 documents changed"), runs, strict=True
    ):
        print(f"{name:<30}{calls:>7}{elapsed:>9.2f}{rounds:>12}{waited:>11.2f}{elapsed - waited:>12.2f}")
    if full_calls == 0:
        return math.nan, rerun_time / full_time, math.nan, "the full run made no LLM calls"
    return rerun_calls / full_calls, rerun_time / full_time, rerun_wait / full_time, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--documents", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs per concurrency; the median counts")
    parser.add_argument("--capacity", type=int, default=8, help="requests the capacity server takes at once")
    parser.add_argument("--capacity-latency-ms", type=float, default=100.0)
    parser.add_argument("--retry-after-ms", type=float, default=100.0)
    parser.add_argument("--capacity-requests", type=int, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    latency = args.latency_ms / 1000

    with fake_openai_process(latency_s=latency) as server:
        measure_throughput(server, args.concurrency, 20, "warm-up")  # imports, first connections
        share = cpu_share()
        rows = []
        for concurrency in (1, args.concurrency):
            runs = [
                measure_throughput(server, concurrency, args.requests, f"c{concurrency}-{n}")
                for n in range(args.repeat)
            ]
            rate = statistics.median(r for r, _ in runs)
            cpu_ms = statistics.median(c for _, c in runs)
            rows.append((concurrency, rate, rate / (concurrency / latency), cpu_ms))
        print(
            f"latency {args.latency_ms:g} ms; this process gets {share:.2f} of a core (1.00 = idle machine)"
        )
        print(
            f"{'concurrency':>11} {'requests':>9} {'req/s':>9} {'ideal req/s':>12} {'efficiency':>11}"
            f" {'client CPU ms/req':>18}"
        )
        for concurrency, rate, eff, cpu_ms in rows:
            print(
                f"{concurrency:>11} {args.requests:>9} {rate:>9.1f} {concurrency / latency:>12.1f}"
                f" {eff:>11.3f} {cpu_ms:>18.2f}"
            )
        efficiency = rows[-1][2]
        speedup = rows[-1][1] / rows[0][1]
        # where the gap to 1.0 lies: the same requests at the same concurrency through the openai
        # SDK alone (what ragtune's client wraps) and through bare aiohttp (the server's ceiling here)
        references = {}
        for name, sdk in (("openai SDK alone", True), ("bare aiohttp", False)):
            measure_bare(server, args.concurrency, 20, sdk)  # warm-up
            runs = [measure_bare(server, args.concurrency, args.requests, sdk) for _ in range(args.repeat)]
            references[name] = (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
        ideal = args.concurrency / latency
        print(
            f"{'reference, same concurrency':>27} {'req/s':>9} {'efficiency':>11} {'client CPU ms/req':>18}"
        )
        for name, (rate, cpu_ms) in references.items():
            print(f"{name:>27} {rate:>9.1f} {rate / ideal:>11.3f} {cpu_ms:>18.2f}")
        vs_sdk = efficiency / (references["openai SDK alone"][0] / ideal)

        capacity = measure_capacity(
            args.capacity, args.capacity_latency_ms / 1000, args.retry_after_ms / 1000, args.capacity_requests
        )
        print(
            f"\nserver capacity {args.capacity} at once, latency {args.capacity_latency_ms:g} ms, 429 with "
            f"Retry-After {args.retry_after_ms:g} ms beyond it; {args.capacity_requests} requests each"
        )
        print(
            f"{'mode':<26} {'goodput/(C/L)':>14} {'failed':>7} {'concurrency at end':>19}"
            f" {'all answered/(C/L)':>19} {'passes':>7} {'429s':>6}"
        )
        for mode, run in capacity.items():
            print(
                f"{mode:<26} {run.goodput:>14.3f} {run.failed:>7} {run.concurrency:>19}"
                f" {run.completion:>19.3f} {run.passes:>7} {run.rejected:>6}"
            )
        overrun, paused, oracle, adaptive = (
            capacity[mode].goodput for mode in (OVERRUN, PAUSED, ORACLE, ADAPTIVE)
        )
        adaptive_failed = capacity[ADAPTIVE].failed
        complete_vs_overrun = capacity[ADAPTIVE].completion / capacity[OVERRUN].completion

        with tempfile.TemporaryDirectory(prefix="ragtune-bench-synth-") as tmp:
            try:
                inc_calls, inc_time, inc_wait, note = measure_incremental(server, args.documents, Path(tmp))
            except Exception as err:  # another stage's bug must not hide the LLM numbers
                traceback.print_exc()
                inc_calls, inc_time, inc_wait = math.nan, math.nan, math.nan
                note = f"incremental run failed: {err}"
    if note:
        print(f"note: {note}")
    print(
        f"efficiency={efficiency:.3f} efficiency_vs_sdk={vs_sdk:.3f} speedup={speedup:.2f} "
        f"adaptive_vs_oracle={adaptive / oracle:.3f} adaptive_vs_overrun={adaptive / overrun:.2f} "
        f"adaptive_failed={adaptive_failed} adaptive_vs_fixed_paused={adaptive / paused:.2f} "
        f"completion_vs_overrun={complete_vs_overrun:.2f} "
        f"incremental_calls={inc_calls:.3f} incremental_time={inc_time:.3f} "
        f"incremental_llm_wait={inc_wait:.3f} incremental_own={inc_time - inc_wait:.3f}"
    )


if __name__ == "__main__":
    main()
