"""Every ``ragtune`` command through typer's ``CliRunner``: what it writes, and its errors as one line.

The runner invokes the same ``app`` the console script runs, so an error looks here exactly as it
does in a terminal: one ``error:`` line naming the file, key or value, exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ragtune.cli import EXIT_PARTIAL, app
from ragtune.core.config import RagtuneConfig

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    """The error: exactly one ``error:`` line, and it is the last thing printed (logs may come before)."""
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], output
    return errors[0]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config whose run.root, caches and MLflow store live in tmp_path."""
    path = tmp_path / "ragtune.yaml"
    path.write_text(yaml.safe_dump({"run": {"root": str(tmp_path / "runs")}}))
    return path


def test_help_lists_every_command() -> None:
    code, output = invoke("--help")
    assert code == 0
    for command in (
        "run",
        "parse",
        "index",
        "synthesize",
        "train",
        "evaluate",
        "promote",
        "compile",
        "upload",
        "submit",
        "audit",
    ):
        assert command in output


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    code, output = invoke(
        "parse", str(tmp_path), "--out", str(tmp_path / "out"), "--config", str(tmp_path / "nope.yaml")
    )
    assert code == 1
    assert "nope.yaml" in one_error_line(output)


def test_an_unknown_set_key_is_one_line_naming_it(tmp_path: Path) -> None:
    code, output = invoke(
        "parse", str(tmp_path), "--out", str(tmp_path / "out"), "--set", "index.chunk_tokenz=3"
    )
    assert code == 1
    assert "chunk_tokenz" in one_error_line(output)


def test_a_malformed_set_flag_is_one_line(tmp_path: Path) -> None:
    code, output = invoke("parse", str(tmp_path), "--out", str(tmp_path / "out"), "--set", "novalue")
    assert code == 1
    assert "novalue" in one_error_line(output)


# --- run (the local runner itself is exercised by tests/pipelines/test_local_run.py and test_task_logs.py)
def test_run_passes_corpus_and_verbose_to_the_runner_and_prints_the_outputs(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines import local_run

    seen: dict[str, object] = {}
    run_dir = tmp_path / "runs" / "ragtune-1"
    (run_dir / "parse-documents" / "documents").mkdir(parents=True)
    (run_dir / "parse-documents" / "documents" / "documents.jsonl").write_text("")
    (run_dir / "logs").mkdir()

    def fake_run_locally(
        config: RagtuneConfig, verbose: bool = False, console: object = None, runner: str = "subprocess"
    ) -> local_run.LocalRun:
        seen.update(corpus=config.corpus.uri, verbose=verbose, root=config.run.root, runner=runner)
        return local_run.LocalRun(
            run_dir=run_dir,
            outputs={"parse-documents/documents": run_dir / "parse-documents" / "documents"},
            seconds=3.0,
            logs_dir=run_dir / "logs",
        )

    monkeypatch.setattr(local_run, "run_locally", fake_run_locally)
    code, output = invoke(
        "run",
        "--config",
        str(config_file),
        "--corpus",
        str(tmp_path / "docs"),
        "--verbose",
        "--runner",
        "docker",
    )
    assert code == 0, output
    assert seen == {
        "corpus": str(tmp_path / "docs"),
        "verbose": True,
        "root": str(tmp_path / "runs"),
        "runner": "docker",
    }
    assert "pipeline finished" in output
    assert "parse-documents/documents" in output and "documents.jsonl" in output
    assert "<task>.log" in output


def test_run_without_corpus_keeps_the_configs(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import local_run

    seen: list[str] = []

    def fake_run_locally(
        config: RagtuneConfig, verbose: bool = False, console: object = None, runner: str = "subprocess"
    ) -> local_run.LocalRun:
        seen.append(config.corpus.uri)
        raise local_run.RagtuneError("task parse-documents failed; its full log: /x/logs/parse-documents.log")

    monkeypatch.setattr(local_run, "run_locally", fake_run_locally)
    code, output = invoke("run", "--config", str(config_file))
    assert seen == [RagtuneConfig().corpus.uri]
    assert code == 1 and "parse-documents.log" in one_error_line(output)


def test_run_exports_the_configs_credential_grants_like_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` loads its config through the same function as the other commands: the tasks (and the
    docker runner's RAGTUNE_ENDPOINTS) see the user's security.endpoints."""
    import os

    from pipelines import local_run

    monkeypatch.setenv("RAGTUNE_ENDPOINTS", "")  # unset for ragtune, and restored after the test
    grant = {"name": "s3", "url": "http://127.0.0.1:9000", "secrets": ["AWS_ACCESS_KEY_ID"]}
    path = tmp_path / "ragtune.yaml"
    path.write_text(yaml.safe_dump({"security": {"endpoints": [grant]}}))
    seen: list[str | None] = []

    def fake_run_locally(config: RagtuneConfig, **_: object) -> local_run.LocalRun:
        seen.append(os.environ.get("RAGTUNE_ENDPOINTS"))
        raise local_run.RagtuneError("stop here")

    monkeypatch.setattr(local_run, "run_locally", fake_run_locally)
    invoke("run", "--config", str(path))
    assert seen and json.loads(seen[0] or "[]") == [grant]


# --- parse
def test_parse_writes_documents_and_says_how_many(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "note.md").write_text("# Anxiety\n\n## Symptoms\n\nWorry that is hard to control, most days.\n")
    code, output = invoke(
        "parse", str(corpus), "--out", str(tmp_path / "out"), "--set", f"run.root={tmp_path / 'runs'}"
    )
    assert code == 0, output
    assert "parsed 1 document(s), 0 failed" in output
    assert json.loads((tmp_path / "out" / "documents.jsonl").read_text().splitlines()[0])["title"]


def test_parse_exits_3_when_some_files_fail(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text(
        "# Title\n\n## Part\n\nSome text about sleep and mood, enough to count as a document.\n"
    )
    (corpus / "bad.pdf").write_bytes(b"not a pdf at all")
    flags = ["--out", str(tmp_path / "out"), "--set", f"run.root={tmp_path / 'runs'}"]
    code, output = invoke("parse", str(corpus), *flags, "--set", "parse.max_failed_fraction=0.5")
    assert code == EXIT_PARTIAL, output
    assert "bad.pdf" in output
    code, output = invoke("parse", str(corpus), *flags)  # 1 of 2 is over the default 0.2
    assert code == 1
    assert "bad.pdf" in one_error_line(output)


def test_parse_of_a_missing_path_is_one_line(tmp_path: Path) -> None:
    code, output = invoke("parse", str(tmp_path / "absent"), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "absent" in one_error_line(output)


# --- index, synthesize, train, evaluate: the errors a user meets first (their stages have own tests)
def test_index_of_a_missing_documents_file_is_one_line(tmp_path: Path) -> None:
    code, output = invoke("index", str(tmp_path / "documents.jsonl"), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "documents.jsonl" in one_error_line(output)


def test_synthesize_with_an_index_folder_without_documents_is_one_line(tmp_path: Path) -> None:
    code, output = invoke("synthesize", "--out", str(tmp_path / "out"), "--index", str(tmp_path))
    assert code == 1
    assert "documents.jsonl" in one_error_line(output)


def test_train_on_a_folder_without_a_dataset_is_one_line(tmp_path: Path) -> None:
    code, output = invoke(
        "train", str(tmp_path), "--out", str(tmp_path / "out"), "--set", f"run.root={tmp_path / 'runs'}"
    )
    assert code == 1
    assert str(tmp_path) in one_error_line(output)


def test_evaluate_on_a_folder_without_a_dataset_is_one_line(tmp_path: Path) -> None:
    code, output = invoke(
        "evaluate", str(tmp_path), "--out", str(tmp_path / "out"), "--set", f"run.root={tmp_path / 'runs'}"
    )
    assert code == 1
    assert "eval.jsonl" in one_error_line(output)


def test_promote_of_an_unregistered_version_is_one_line(config_file: Path) -> None:
    code, output = invoke("promote", "--version", "7", "--config", str(config_file))
    assert code == 1
    assert "7" in one_error_line(output)


# --- compile, upload, submit
def test_compile_accepts_a_folder(tmp_path: Path) -> None:
    code, output = invoke("compile", "--out", str(tmp_path))
    assert code == 0, output
    compiled = tmp_path / "ragtune_pipeline.yaml"
    assert next(yaml.safe_load_all(compiled.read_text()))["pipelineInfo"]["name"] == "ragtune"


def test_compile_to_a_non_yaml_file_is_one_line(tmp_path: Path) -> None:
    code, output = invoke("compile", "--out", str(tmp_path / "pipeline.txt"))
    assert code == 1
    assert "pipeline.txt" in one_error_line(output)


def test_upload_and_submit_without_a_compiled_package_are_one_line(tmp_path: Path) -> None:
    for command in ("upload", "submit"):
        code, output = invoke(
            command, "--host", "http://127.0.0.1:9", "--package", str(tmp_path / "none.yaml")
        )
        assert code == 1
        assert "none.yaml" in one_error_line(output)


def test_upload_and_submit_talk_to_kfp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kfp.client.client import Client

    from tests.pipelines.fake_kfp import FakeKfpServer

    monkeypatch.setattr(Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-such-token"))
    monkeypatch.setenv("KFP_TOKEN", "t0ken")
    code, output = invoke("compile", "--out", str(tmp_path))
    package = str(tmp_path / "ragtune_pipeline.yaml")
    with FakeKfpServer(token="t0ken") as server:
        code, output = invoke("upload", "--host", server.url, "--package", package, "--version", "v1")
        assert code == 0, output
        assert "pipeline ragtune" in output and "version v1" in output
        submit = ("submit", "--host", server.url, "--package", package, "--git-revision", "a" * 40)
        code, output = invoke(*submit, "--set", "run.name=demo")
        assert code == 0, output
        assert output.splitlines()[-1].startswith("submitted: ")
        code, output = invoke(*submit, "--set", "run.name=demo")
        assert code == 0 and output.splitlines()[-1].startswith("already submitted: "), output
