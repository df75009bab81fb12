"""The evaluate stage end to end: scripted answerers, a fake OpenAI-compatible judge, real files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragtune.core.artifacts import EvaluationDir
from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.errors import InputError
from ragtune.core.llm.base import REPAIR_SEPARATOR
from ragtune.core.records import write_jsonl
from ragtune.evaluate import EvalMetrics, EvalReport, ScoreRow, run_evaluate
from ragtune.evaluate.generators import answer_messages
from ragtune.evaluate.stage import select_items
from ragtune.registry import EvalSummary
from ragtune.registry.stage import eval_metrics
from tests.conftest import declare_endpoint
from tests.evaluate.fakes import PrefillJudge, ScriptedAnswerer, WordHashEncoder, judge_responder
from tests.evaluate.helpers import ITEMS, make_item
from tests.llm.fake_openai import FakeOpenAI


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("RAGTUNE_TEST_JUDGE_KEY", "test-key")
    with FakeOpenAI(responder=judge_responder) as fake:
        declare_endpoint(monkeypatch, str(fake.endpoint().base_url), "RAGTUNE_TEST_JUDGE_KEY")
        yield fake


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    directory = tmp_path / "dataset"
    write_jsonl(directory / "eval.jsonl", ITEMS)
    return directory


def make_config(tmp_path: Path, server: FakeOpenAI, **evaluate: object) -> RagtuneConfig:
    return build_config(
        {
            "run": {"root": str(tmp_path / "runs")},
            "llm": {
                "judge": {
                    "base_url": server.url,
                    "model": "judge-model",
                    "api_key_env": "RAGTUNE_TEST_JUDGE_KEY",
                    "temperature": 0.0,
                    "max_retries": 0,
                    "timeout_s": 5,
                }
            },
            "evaluate": {
                "bootstrap_samples": 200,
                "max_new_tokens": 32,
                "contenders": [
                    {
                        "name": "gpt-3.5",
                        "base_url": server.url,
                        "model": "contender-model",
                        "api_key_env": "RAGTUNE_TEST_JUDGE_KEY",
                    }
                ],
                **evaluate,
            },
        }
    )


def answerers() -> dict[str, ScriptedAnswerer]:
    references = {item.question: item.answer for item in ITEMS}
    return {
        "base": ScriptedAnswerer("test:base", lambda q: "I am not sure."),
        "tuned": ScriptedAnswerer("test:tuned", lambda q: f"TUNED <script>alert(1)</script> {references[q]}"),
    }


def run(config: RagtuneConfig, dataset: Path, out: Path) -> EvalReport:
    return run_evaluate(config, dataset, None, out, answerers=answerers(), encoder=WordHashEncoder())


def test_evaluate_end_to_end(tmp_path: Path, dataset: Path, server: FakeOpenAI) -> None:
    config = make_config(tmp_path, server)
    out = tmp_path / "eval"
    report = run(config, dataset, out)

    assert report.metrics.contender_names == ["base", "tuned", "gpt-3.5"]
    assert report.metrics.n_items == 2
    assert report.metrics.judge_is_weak is False and report.metrics.judge_model == "openai:judge-model"
    assert report.metrics.sums == {"base": 6, "tuned": 18, "gpt-3.5": 0}
    assert report.metrics.means == {"base": 3.0, "tuned": 9.0, "gpt-3.5": None}
    assert (
        report.metrics.delta_mean,
        report.metrics.delta_ci_low,
        report.metrics.delta_ci_high,
        report.metrics.delta_n,
    ) == (
        6.0,
        6.0,
        6.0,
        2,
    )
    # tuned wins against base in both orders; against the position-biased verdicts it ties
    base, gpt = report.metrics.pairwise["base"], report.metrics.pairwise["gpt-3.5"]
    assert (base.wins, base.ties, base.losses, base.win_rate) == (2, 0, 0, 1.0)
    assert (gpt.wins, gpt.ties, gpt.losses, gpt.tie_rate) == (0, 2, 0, 1.0)
    # the contender's answers got prose from the judge: two judge failures, recorded
    assert report.metrics.failures_total == 2

    rows = [ScoreRow.model_validate_json(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    by_key = {(r.item_id, r.contender): r for r in rows}
    tuned = by_key[("item-panic", "tuned")]
    assert tuned.score == 9 and tuned.reason == "matches the reference" and tuned.parsed_from == "json"
    assert tuned.rouge_l is not None and tuned.rouge_l > 0.5
    assert tuned.cosine is not None and tuned.cosine > by_key[("item-panic", "base")].cosine  # type: ignore[operator]
    failed = by_key[("item-insomnia", "gpt-3.5")]
    assert failed.score is None and failed.judge_error == "unparseable judge reply"
    # the structured path asked once for a repair; both replies are on the record
    assert failed.judge_raw == f"I am unable to grade this answer, sorry.{REPAIR_SEPARATOR}unexpected prompt"
    assert failed.answer == "contender GARBAGE: What is insomnia?"

    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "delta_mean",
        "delta_ci_low",
        "delta_ci_high",
        "judge_model",
        "judge_is_weak",
        "means",
        "sums",
    ):
        assert key in metrics
    assert metrics["contenders"]["tuned"]["score_mean"] == 9.0
    assert metrics["failures"]["judge_scores"] == {"base": 0, "tuned": 0, "gpt-3.5": 2}
    assert metrics["judge_templates"]["score"] == "judge_score@2"
    # 6 scores (+2 repairs of the prose ones), 4 comparisons x 2 orders, and the judge check: 2
    # references, then for each item an off-topic and a truncated answer (these references have no
    # swappable fact): 4 scores and 4 comparisons x 2 orders
    assert metrics["llm_usage"]["judge"]["calls"] == 6 + 2 + 8 + 2 + 4 + 8
    # this judge scores every answer without "TUNED" alike: it cannot tell a reference from a wrong one
    check = metrics["judge_check"]
    assert check["n"] == 2 and check["discrimination"] == 0.0 and not check["passed"]
    assert set(check["kinds"]) == {"off_topic", "truncated"}
    assert check["kinds"]["truncated"]["discrimination"]["ci_high"] == 0.0
    assert metrics["primary_metric"] == "corpus_facts"  # auto falls back from the flagged judge
    # the scripted answerers have no weights to score by likelihood: said so, per eval set
    generalization, knowledge = metrics["eval_sets"]["generalization"], metrics["eval_sets"]["knowledge"]
    assert generalization["present"] and generalization["n_items"] == 2
    assert generalization["bootstrap_unit"] == "source_chunk" and generalization["n_clusters"] == 2
    assert generalization["corpus_facts"]["not_scored"] == ["base", "tuned", "gpt-3.5"]
    assert generalization["corpus_facts"]["contenders"] == {}
    assert knowledge["present"] is False and knowledge["n_items"] == 0 and knowledge["judge_check"] is None
    assert metrics["primary_eval_set"] == "generalization" and metrics["bootstrap_unit"] == "source_chunk"
    names = {(c["name"], c["metric"]) for c in metrics["comparisons"]}
    assert names == {("tuned-base", "judge"), ("tuned-base", "reference")}
    judge_delta = next(c for c in metrics["comparisons"] if c["metric"] == "judge")
    assert (judge_delta["mean"], judge_delta["ci_low"], judge_delta["n"]) == (6.0, 6.0, 2)
    assert metrics["leakage"]["n_train"] == 0 and metrics["leakage"]["share"] == 0.0

    pairs = [json.loads(line) for line in (out / "pairwise.jsonl").read_text().splitlines()]
    assert {(p["contender"], p["verdict_tuned_first"], p["verdict_tuned_second"]) for p in pairs} == {
        ("base", "A", "B"),
        ("gpt-3.5", "A", "A"),
    }

    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert "weak-judge-warning" not in html

    # what the judge saw: the rubric with reference and context; the contender saw only the question
    requests = server.chat_requests()
    contender_prompts = [r.body["messages"] for r in requests if r.body["model"] == "contender-model"]
    assert sorted(map(str, contender_prompts)) == sorted(str(answer_messages(i)) for i in ITEMS)
    # requests arrive concurrently, in any order: take the first one about item 0
    judge_prompt = next(
        r.body
        for r in requests
        if r.body["model"] == "judge-model" and ITEMS[0].question in r.body["messages"][-1]["content"]
    )
    text = judge_prompt["messages"][-1]["content"]
    assert ITEMS[0].answer in text and ITEMS[0].context[0].text in text
    assert judge_prompt["response_format"]["type"] in {"json_schema", "json_object"}


def test_the_registry_reads_back_the_report_the_stage_wrote(
    tmp_path: Path, dataset: Path, server: FakeOpenAI
) -> None:
    """The contract across the stage boundary: what run_evaluate writes, the registry reads typed."""
    out = tmp_path / "eval"
    report = run(make_config(tmp_path, server), dataset, out)
    assert EvaluationDir(out).read_report(EvalMetrics) == report.metrics

    summary = EvalSummary.load(out)
    assert (summary.tuned_mean, summary.base_mean, summary.delta_n) == (9.0, 3.0, 2)
    assert summary.judge_model == "openai:judge-model" and summary.judge_is_weak is False
    # the primary metric is corpus_facts, which the weightless scripted answerers cannot be scored on
    assert summary.primary_metric == report.metrics.primary_metric == "corpus_facts"
    assert report.metrics.comparison("tuned-base") is None
    assert (summary.primary_delta_mean, summary.primary_n) == (None, None)
    tuned_base = report.metrics.comparison("tuned-base", "judge")
    assert tuned_base is not None
    assert summary.judge_check_passed == (
        report.metrics.judge_check is not None and report.metrics.judge_check.passed
    )
    logged = eval_metrics(EvaluationDir(out).read_report(EvalMetrics))
    assert logged[f"comparisons/tuned-base/{tuned_base.metric}/n"] == 2.0 and logged["means/tuned"] == 9.0
    assert "judge_check/passed" in logged


def test_rerun_is_served_from_the_caches(tmp_path: Path, dataset: Path, server: FakeOpenAI) -> None:
    config = make_config(tmp_path, server)
    first = run(config, dataset, tmp_path / "one")
    sent = server.chat_count
    second = run(config, dataset, tmp_path / "two")
    assert server.chat_count == sent  # judge and contender answers all cached
    assert (
        second.metrics.means == first.metrics.means and second.metrics.delta_mean == first.metrics.delta_mean
    )
    assert (tmp_path / "one" / "scores.jsonl").read_text() == (tmp_path / "two" / "scores.jsonl").read_text()


def test_pairwise_off_and_contender_failures(tmp_path: Path, dataset: Path, server: FakeOpenAI) -> None:
    config = make_config(tmp_path, server, pairwise=False)
    server.plan = lambda index, body: "bad_request" if body.get("model") == "contender-model" else None
    out = tmp_path / "eval"
    report = run(config, dataset, out)
    assert report.metrics.pairwise == {}
    assert (out / "pairwise.jsonl").read_text() == ""
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["failures"]["answers"]["gpt-3.5"] == 2
    assert metrics["contenders"]["gpt-3.5"]["n_answered"] == 0
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert all(r["answer_error"] for r in rows if r["contender"] == "gpt-3.5")


def test_unset_judge_url_is_flagged_weak_in_metrics_and_report(
    tmp_path: Path, dataset: Path, server: FakeOpenAI
) -> None:
    """The weak flag follows llm.judge (no base_url = local SmolLM2); a scripted judge stands in for it."""
    config = make_config(tmp_path, server, contenders=[])
    config.llm.judge.base_url = None
    judge = PrefillJudge("local:smollm2")
    out = tmp_path / "eval"
    report = run_evaluate(
        config, dataset, None, out, answerers=answerers(), judge_model=judge, encoder=WordHashEncoder()
    )
    assert report.metrics.judge_is_weak is True
    assert json.loads((out / "metrics.json").read_text())["judge_is_weak"] is True
    assert 'id="weak-judge-warning"' in (out / "report.html").read_text()
    assert report.metrics.means["tuned"] == 9.0 and report.metrics.means["base"] == 2.0


def test_max_items_samples_across_categories() -> None:
    items = [make_item(f"a{i}", "A", f"qa{i}", "x", []) for i in range(6)]
    items += [make_item(f"b{i}", "B", f"qb{i}", "x", []) for i in range(2)]
    chosen, warnings = select_items(items, 3, seed=0)
    assert len(chosen) == 3 and warnings == []
    assert {i.category for i in chosen} == {"A", "B"}
    positions = [items.index(i) for i in chosen]
    assert positions == sorted(positions)  # file order kept
    assert select_items(items, 3, seed=0)[0] == chosen
    assert len(select_items(items, None, seed=0)[0]) == 8


def test_repeated_item_ids_are_skipped_with_a_warning() -> None:
    chosen, warnings = select_items([ITEMS[0], ITEMS[1], ITEMS[0]], None, seed=0)
    assert [i.item_id for i in chosen] == ["item-panic", "item-insomnia"]
    assert len(warnings) == 1 and "item-panic" in warnings[0]


def test_missing_eval_file_is_an_input_error(tmp_path: Path, server: FakeOpenAI) -> None:
    with pytest.raises(InputError, match=r"eval\.jsonl"):
        run_evaluate(
            make_config(tmp_path, server), tmp_path / "nothing", None, tmp_path / "out", answerers=answerers()
        )


def test_answer_prompt_is_the_question_alone_with_the_system_message() -> None:
    assert answer_messages(ITEMS[0]) == [
        {"role": "system", "content": "You answer questions about mental health."},
        {"role": "user", "content": "What is a panic attack?"},
    ]
    bare = ITEMS[0].model_copy(update={"messages": []})
    assert answer_messages(bare) == [{"role": "user", "content": "What is a panic attack?"}]
