"""The GROBID client against a local HTTP server that answers the way GROBID does."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ragtune.core.config import ParseConfig
from ragtune.core.retry import RETRY_AFTER_MAX_S, retry_after_seconds
from ragtune.parse import grobid as grobid_module
from ragtune.parse import run_parse
from ragtune.parse.grobid import GrobidClient, GrobidError
from ragtune.parse.report import EXIT_OK
from tests.parse.conftest import MakeConfig, load_outputs, report_entry


@dataclass
class Call:
    filename: str
    consolidate: str | None


@dataclass
class FakeGrobid:
    """Behaviour is chosen by the uploaded file's name: ok*, busy*, broken*, slow*, gone*, flaky*
    (HTTP 502 once, then ok), reset* (connection dropped once, then ok), missing* (HTTP 404)."""

    tei: bytes
    calls: list[Call] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    hold_s: float = 0.0  # how long each successful answer takes
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def attempts(self, filename: str) -> int:
        return sum(1 for c in self.calls if c.filename == filename)


def _handler(fake: FakeGrobid) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/xml" if status == 200 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            name = re.search(rb'name="input"; filename="([^"]+)"', body)
            consolidate = re.search(rb'name="consolidateHeader"\r\n\r\n(\w+)\r\n', body)
            filename = name.group(1).decode() if name else ""
            with fake.lock:
                fake.paths.append(self.path)
                fake.calls.append(Call(filename, consolidate.group(1).decode() if consolidate else None))
                tries = fake.attempts(filename)
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                if filename.startswith("flaky") and tries == 1:
                    self._answer(502, b"Bad Gateway", {"Retry-After": "nan"})
                elif filename.startswith("reset") and tries == 1:
                    self.close_connection = True
                    self.connection.shutdown(2)  # no answer at all: the client sees a reset
                elif filename.startswith("missing"):
                    self._answer(404, b"Not Found")
                elif filename.startswith(("busy", "flaky", "reset")) and tries == 1:
                    self._answer(503, b"", {"Retry-After": "0"})
                elif filename.startswith(("busy", "flaky", "reset")):
                    self._answer(200, fake.tei)
                elif filename.startswith("gone"):
                    self._answer(503, b"")
                elif filename.startswith("broken"):
                    self._answer(
                        500, b"[GENERAL] An exception occurred while running Grobid: PDF parse failure"
                    )
                elif filename.startswith("slow"):
                    fake.release.wait(10)  # far past the client's timeout; released at teardown
                    self._answer(200, fake.tei)
                else:
                    fake.release.wait(fake.hold_s)
                    self._answer(200, fake.tei)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on us, as it should
            finally:
                with fake.lock:
                    fake.in_flight -= 1

    return Handler


@pytest.fixture
def fake_grobid(fixtures_dir: Path) -> Iterator[FakeGrobid]:
    fake = FakeGrobid(tei=(fixtures_dir / "sleep-mood.tei.xml").read_bytes())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grobid_module, "BACKOFF_BASE_S", 0.01)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def pdf_corpus(root: Path, names: list[str], pdf: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes(pdf)
    return root


def test_pdf_goes_to_grobid_and_tei_comes_back(
    fake_grobid: FakeGrobid, tmp_path: Path, make_config: MakeConfig, pdf_bytes: dict[str, bytes]
) -> None:
    corpus = pdf_corpus(tmp_path / "corpus", ["ok-paper.pdf"], pdf_bytes["outline"])
    (corpus / "direct.tei.xml").write_bytes(fake_grobid.tei)  # TEI files are read directly, not sent
    config = make_config(corpus, grobid_url=fake_grobid.url + "/", grobid_consolidate_header=True)
    report = run_parse(config, tmp_path / "out")
    documents, on_disk = load_outputs(tmp_path / "out")

    assert report.exit_code == EXIT_OK
    assert fake_grobid.paths == ["/api/processFulltextDocument"]
    assert fake_grobid.calls == [Call("ok-paper.pdf", "1")]
    assert report_entry(on_disk, "ok-paper.pdf")["parser"] == "grobid"
    assert report_entry(on_disk, "direct.tei.xml")["parser"] == "tei"
    paper = next(d for d in documents if d.parser == "grobid")
    assert paper.title == "Sleep Regularity and Mood in Adolescents: A Cohort Study"
    assert [e.heading for e in paper.toc(max_level=1)][:3] == ["Abstract", "Introduction", "Methods"]


def test_busy_then_ok_is_retried(
    fake_grobid: FakeGrobid, tmp_path: Path, make_config: MakeConfig, pdf_bytes: dict[str, bytes]
) -> None:
    corpus = pdf_corpus(tmp_path / "corpus", ["busy-paper.pdf"], pdf_bytes["outline"])
    report = run_parse(
        make_config(corpus, grobid_url=fake_grobid.url, grobid_max_retries=2), tmp_path / "out"
    )
    assert fake_grobid.attempts("busy-paper.pdf") == 2
    assert report.exit_code == EXIT_OK
    assert report.files[0].parser == "grobid" and report.files[0].status == "ok"


def test_busy_until_retries_run_out(
    fake_grobid: FakeGrobid, tmp_path: Path, make_config: MakeConfig, pdf_bytes: dict[str, bytes]
) -> None:
    corpus = pdf_corpus(tmp_path / "corpus", ["gone-paper.pdf"], pdf_bytes["outline"])
    report = run_parse(
        make_config(corpus, grobid_url=fake_grobid.url, grobid_max_retries=2), tmp_path / "out"
    )
    assert fake_grobid.attempts("gone-paper.pdf") == 3
    reason = report.files[0].reason or ""
    assert (
        reason.startswith("gone-paper.pdf: ") and "HTTP 503" in reason and "gave up after 3 attempt" in reason
    )


def test_server_error_fails_that_file_only(
    fake_grobid: FakeGrobid, tmp_path: Path, make_config: MakeConfig, pdf_bytes: dict[str, bytes]
) -> None:
    corpus = pdf_corpus(tmp_path / "corpus", ["broken-paper.pdf", "ok-paper.pdf"], pdf_bytes["outline"])
    config = make_config(corpus, grobid_url=fake_grobid.url, grobid_max_retries=3, max_failed_fraction=1)
    report = run_parse(config, tmp_path / "out")
    _, on_disk = load_outputs(tmp_path / "out")
    broken = report_entry(on_disk, "broken-paper.pdf")
    assert broken["status"] == "failed"
    assert broken["reason"].startswith("broken-paper.pdf: GROBID failed with HTTP 500: ")
    assert "PDF parse failure" in broken["reason"] and "gave up after 4 attempt(s)" in broken["reason"]
    assert fake_grobid.attempts("broken-paper.pdf") == 4  # any 5xx is retried, within the bound
    assert report_entry(on_disk, "ok-paper.pdf")["status"] == "ok"
    assert report.partial is True


def test_any_5xx_and_a_reset_connection_are_retried_but_a_4xx_is_not(
    fake_grobid: FakeGrobid, tmp_path: Path, make_config: MakeConfig, pdf_bytes: dict[str, bytes]
) -> None:
    names = ["flaky-paper.pdf", "reset-paper.pdf", "missing-paper.pdf"]
    corpus = pdf_corpus(tmp_path / "corpus", names, pdf_bytes["outline"])
    config = make_config(corpus, grobid_url=fake_grobid.url, grobid_max_retries=2, max_failed_fraction=1)
    report = run_parse(config, tmp_path / "out")
    status = {f.source: f.status for f in report.files}
    assert status == {"flaky-paper.pdf": "ok", "reset-paper.pdf": "ok", "missing-paper.pdf": "failed"}
    assert [fake_grobid.attempts(name) for name in names] == [2, 2, 1]
    missing = next(f for f in report.files if f.source == "missing-paper.pdf")
    assert missing.reason == "missing-paper.pdf: GROBID failed with HTTP 404: Not Found"


@pytest.mark.timeout(15)
def test_hang_past_the_timeout_fails_quickly(
    fake_grobid: FakeGrobid, tmp_path: Path, make_config: MakeConfig, pdf_bytes: dict[str, bytes]
) -> None:
    corpus = pdf_corpus(tmp_path / "corpus", ["slow-paper.pdf"], pdf_bytes["outline"])
    config = make_config(corpus, grobid_url=fake_grobid.url, grobid_timeout_s=0.5, grobid_max_retries=1)
    report = run_parse(config, tmp_path / "out")
    reason = report.files[0].reason or ""
    assert report.files[0].status == "failed"
    assert reason.startswith("slow-paper.pdf: GROBID timed out") and "0.5 s timeout" in reason
    assert fake_grobid.attempts("slow-paper.pdf") == 2  # the first try and one retry


def test_concurrency_is_bounded(
    fake_grobid: FakeGrobid, tmp_path: Path, make_config: MakeConfig, pdf_bytes: dict[str, bytes]
) -> None:
    fake_grobid.hold_s = 0.15
    names = [f"ok-{i}.pdf" for i in range(6)]
    corpus = pdf_corpus(tmp_path / "corpus", names, pdf_bytes["outline"])
    report = run_parse(
        make_config(corpus, grobid_url=fake_grobid.url, grobid_concurrency=2), tmp_path / "out"
    )
    documents, _ = load_outputs(tmp_path / "out")
    assert report.ok == 6
    assert fake_grobid.max_in_flight == 2
    assert [d.source_uri.rsplit("/", 1)[-1] for d in documents] == names  # input order kept


def test_unreachable_server_is_a_clear_failure(
    tmp_path: Path, make_config: MakeConfig, pdf_bytes: dict[str, bytes]
) -> None:
    corpus = pdf_corpus(tmp_path / "corpus", ["paper.pdf"], pdf_bytes["outline"])
    report = run_parse(make_config(corpus, grobid_url="http://127.0.0.1:9"), tmp_path / "out")
    reason = report.files[0].reason or ""
    assert "cannot reach GROBID at http://127.0.0.1:9/api/processFulltextDocument" in reason
    assert "gave up after 6 attempt(s)" in reason  # refused connections are retried, within the bound


def test_retry_after_is_honoured(fake_grobid: FakeGrobid) -> None:
    """The server's Retry-After decides the wait; without one, backoff grows with jitter."""
    waits: list[float] = []
    config = ParseConfig(grobid_url=fake_grobid.url, grobid_max_retries=2)
    with GrobidClient(config, sleep=waits.append) as client:
        assert client.process_fulltext("busy-x.pdf", b"%PDF-1.4 fake").startswith(b"<?xml")
        assert waits == [0.0]  # Retry-After: 0
        with pytest.raises(GrobidError, match="GROBID busy"):
            client.process_fulltext("gone-x.pdf", b"%PDF-1.4 fake")
    assert len(waits) == 3 and 0.005 <= waits[1] <= 0.01 and 0.01 <= waits[2] <= 0.02


def test_backoff_and_retry_after_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grobid_module, "BACKOFF_BASE_S", 1.0)
    client = GrobidClient(ParseConfig(grobid_url="http://grobid:8070"), rng=random.Random(0))
    try:
        waits = [client.backoff_s(attempt) for attempt in range(10)]
    finally:
        client.close()
    for attempt, wait in enumerate(waits[:6]):
        assert 2**attempt / 2 <= wait <= 2**attempt
    assert all(30 <= w <= grobid_module.BACKOFF_MAX_S for w in waits[6:])
    assert client.backoff_s(0, "7") == 7.0

    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds("1e9") == RETRY_AFTER_MAX_S
    for not_finite in ("inf", "-inf", "nan", "Infinity"):
        assert retry_after_seconds(not_finite) is None  # the backoff decides instead
    assert client.backoff_s(0, "nan") <= 1.0
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
