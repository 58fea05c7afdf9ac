"""The DataMan teacher against a real HTTP server on loopback: answers, retries, malformed answers,
timeouts, a dead endpoint, the cache; the key: from the environment only, never sent on a redirect,
never written or printed."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.config import ConfigError
from pipelines.dataman_build import load_spec
from scorers.dataman import DOMAINS, RATINGS
from scorers.dataman import prompt as prompt_module
from scorers.dataman.prompt import MalformedAnswer, parse_answer, truncate_head_tail
from scorers.dataman.teacher import Teacher, TeacherConfig
from tests.conftest import ROOT, SAMPLE

GOOD = {**{r: 4 for r in RATINGS}, "domain": "technology"}


class Server:
    """Each request is answered by `self.respond(request_number, body) -> (status, content, delay)`;
    `self.location`, when set, is sent as a Location header; every request's headers are kept."""

    def __init__(self):
        self.seen = 0
        self.headers = []  # per request (any method)
        self.location = None
        self.respond = lambda n, body: (200, json.dumps(GOOD), 0)
        lock, server = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                with lock:
                    server.seen += 1
                    server.headers.append(dict(self.headers))
                    n = server.seen
                status, content, delay = server.respond(n, body)
                time.sleep(delay)
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if server.location:
                    self.send_header("Location", server.location)
                self.end_headers()
                self.wfile.write(payload.encode() if status == 200 else b'{"error": "x"}')

            do_GET = do_POST  # a followed 302 turns the POST into a GET

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def teacher(url, **kw):
    return Teacher(TeacherConfig(endpoint=url, model="test", backoff_seconds=0.01, **kw))


def docs(n):
    return [{"id": f"d{i}", "text": f"Document number {i} about servers and software."} for i in range(n)]


def test_answers_in_order_with_concurrency(server):
    server.respond = lambda n, body: (200, json.dumps({**GOOD, "overall_score": 1 + int(
        body["messages"][-1]["content"].split("number ")[1].split()[0]) % 5}), 0.01)
    results = teacher(server.url, max_concurrency=4, batch_size=6).rate(docs(20), progress=True)
    assert [r["id"] for r in results] == [f"d{i}" for i in range(20)]  # across batches of 6
    assert all(r["error"] is None and set(r["ratings"]) == set(RATINGS) for r in results)
    assert [r["ratings"]["overall_score"] for r in results] == [1 + i % 5 for i in range(20)]


def test_retries_on_503_and_429(server):
    server.respond = lambda n, body: ((503, "", 0) if n <= 2 else (429, "", 0) if n == 3
                                      else (200, json.dumps(GOOD), 0))
    t = teacher(server.url, max_concurrency=1, max_retries=4)
    [result] = t.rate(docs(1))
    assert result["error"] is None and server.seen == 4 == t.requests


def test_malformed_answers_are_asked_again_then_recorded(server):
    answers = {"prose": "I think it is good.", "seven": json.dumps({**GOOD, "accuracy": 7}),
               "domain": json.dumps({**GOOD, "domain": "astrology"}),
               "fenced": "```json\n" + json.dumps(GOOD) + "\n```"}

    def respond(n, body):
        kind = body["messages"][1]["content"].split("kind=")[1].split()[0]
        return 200, answers[kind], 0

    server.respond = respond
    batch = [{"id": k, "text": f"kind={k} text"} for k in answers]
    results = {r["id"]: r for r in teacher(server.url, reask_on_malformed=1).rate(batch)}
    assert results["fenced"]["error"] is None and results["fenced"]["domain"] == "technology"
    for kind in ("prose", "seven", "domain"):
        assert results[kind]["ratings"] is None and "malformed answer after 2 asks" in results[kind]["error"]
    assert server.seen == 1 + 3 * 2


def test_timeouts_are_recorded(server):
    server.respond = lambda n, body: (200, json.dumps(GOOD), 0.5)
    [result] = teacher(server.url, timeout_seconds=0.2, max_retries=1).rate(docs(1))
    assert "endpoint failed after 2 attempts" in result["error"]


def test_dead_endpoint_records_every_document():
    results = teacher("http://127.0.0.1:9/v1", max_retries=1).rate(docs(3))
    assert all(r["ratings"] is None and "endpoint failed" in r["error"] for r in results)


def test_client_errors_are_not_retried(server):
    server.respond = lambda n, body: (400, "", 0)
    [result] = teacher(server.url, max_retries=3).rate(docs(1))
    assert "HTTP 400" in result["error"] and server.seen == 1


def test_cache(server, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache.sqlite")
    first = teacher(server.url, cache_path=cache).rate(docs(5))
    assert server.seen == 5
    again = teacher(server.url, cache_path=cache).rate(docs(5))
    assert server.seen == 5 and again == first
    teacher(server.url, cache_path=cache).rate([{"id": "x", "text": "a changed text"}])
    assert server.seen == 6
    monkeypatch.setattr("scorers.dataman.teacher.PROMPT_VERSION", prompt_module.PROMPT_VERSION + "-next")
    teacher(server.url, cache_path=cache).rate(docs(1))
    assert server.seen == 7


def test_prompt_and_parsing():
    text = "head " * 2000 + "tail"
    cut = truncate_head_tail(text, 500)
    assert len(cut) <= 500 and cut.startswith("head") and cut.endswith("tail")
    assert truncate_head_tail("short", 500) == "short"
    messages = prompt_module.build_messages("hello", 500)
    assert all(r in messages[0]["content"] for r in RATINGS) and all(d in messages[0]["content"] for d in DOMAINS)
    assert parse_answer("Sure! " + json.dumps({**GOOD, "domain": "Retail E-commerce"}))["domain"] == "retail_ecommerce"


def test_the_teacher_is_sent_the_papers_definitions(server):
    """DataMan's criteria as the paper means them: accuracy is about errors in the text (not world
    knowledge), originality about repetition and copying, professionalism about expertise."""
    bodies = []
    server.respond = lambda n, body: (bodies.append(body), (200, json.dumps(GOOD), 0))[1]
    [result] = teacher(server.url).rate(docs(1))
    assert result["error"] is None
    system = bodies[0]["messages"][0]["content"]
    lines = {line[2:].split(":")[0]: line for line in system.splitlines() if line.startswith("- ")}
    assert set(lines) == set(RATINGS) - {"overall_score"}
    assert "spelling" in lines["accuracy"] and "not your own world knowledge" in lines["accuracy"]
    assert "repetitive" in lines["originality"] and "copied" in lines["originality"]
    assert "knowledge" in lines["professionalism"] and "one language" in lines["language_consistency"]
    with pytest.raises(MalformedAnswer, match="overall_score"):
        parse_answer(json.dumps({k: v for k, v in GOOD.items() if k != "overall_score"}))


KEY = "sk-test-4f1c9e0b7d2a"


def test_redirects_are_not_followed_with_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRISTMILL_TEST_KEY", KEY)
    origin, elsewhere = Server(), Server()  # two ports on loopback: two hosts
    try:
        for code in (302, 307):
            origin.respond = lambda n, body, code=code: (code, "", 0)
            origin.location = f"{elsewhere.url}/chat/completions"
            t = teacher(origin.url, api_key_env="GRISTMILL_TEST_KEY", max_retries=3)
            [result] = t.rate(docs(1))
            assert result["ratings"] is None
            assert f"HTTP {code}" in result["error"] and "redirects are not followed" in result["error"]
            assert origin.headers[-1]["Authorization"] == f"Bearer {KEY}"  # the endpoint itself gets the key
        assert origin.seen == 2  # one request per document: a redirect is not retried
        spec = write_spec(tmp_path, origin.url, ", api_key_env: GRISTMILL_TEST_KEY", max_docs=10)
        assert main(["dataman", "build", spec]) == 1  # the whole build: a clear error, no students
        err = capsys.readouterr().err
        assert "teacher rated none of the 10 documents" in err and "redirects are not followed" in err
        assert KEY not in err and not (tmp_path / "students" / "report.json").exists()
        assert elsewhere.seen == 0 and elsewhere.headers == []  # never reached, key or not
    finally:
        origin.httpd.shutdown()
        elsewhere.httpd.shutdown()


def test_only_http_endpoints():
    for endpoint in ("file:///etc/passwd#", "ftp://127.0.0.1/v1", "127.0.0.1:8000/v1", "http:///v1",
                     "http://user:pass@127.0.0.1/v1", "http://127.0.0.1/v1?x=1"):
        with pytest.raises(ValueError, match="endpoint"):
            TeacherConfig(endpoint=endpoint, model="m")
    assert TeacherConfig(endpoint="https://api.example.com/v1", model="m").endpoint == "https://api.example.com/v1"


def write_spec(tmp_path, url, teacher_extra="", max_docs=12):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
sample: {{name: s, paths: ["{SAMPLE}/*.warc.gz"], format: warc}}
max_docs: {max_docs}
teacher: {{endpoint: "{url}", model: judge, cache_path: {tmp_path / 'cache.sqlite'}{teacher_extra}}}
students: {{epoch: 2, bucket: 1000}}
output: {tmp_path / 'students'}
""")
    return str(spec)


def test_spec_validation_of_the_endpoint_and_the_key(tmp_path, monkeypatch, capsys):
    assert load_spec(str(ROOT / "configs/dataman/sample.yaml")).teacher.api_key_env is None  # the sample validates
    with pytest.raises(ConfigError, match=r"teacher\.endpoint: .*http:// or https://"):
        load_spec(write_spec(tmp_path, "file:///etc/passwd#"))
    with pytest.raises(ConfigError, match=r"teacher: .*`api_key` is not accepted.*api_key_env") as info:
        load_spec(write_spec(tmp_path, "http://127.0.0.1:9/v1", f", api_key: {KEY}"))
    assert KEY not in str(info.value)
    monkeypatch.delenv("GRISTMILL_TEST_KEY", raising=False)
    spec = write_spec(tmp_path, "http://127.0.0.1:9/v1", ", api_key_env: GRISTMILL_TEST_KEY")
    with pytest.raises(ConfigError, match=r"teacher\.api_key_env: .*GRISTMILL_TEST_KEY is not set"):
        load_spec(spec)
    assert main(["dataman", "build", spec]) == 2  # before any work: nothing read, nothing written
    assert "GRISTMILL_TEST_KEY is not set" in capsys.readouterr().err
    assert not (tmp_path / "students").exists() and not (tmp_path / "cache.sqlite").exists()
    with pytest.raises(ConfigError, match=r"api_key_env: .*not the key itself") as info:  # the key pasted there
        load_spec(write_spec(tmp_path, "http://127.0.0.1:9/v1", ", api_key_env: hf_AbCdEf0123"))
    assert "hf_AbCdEf0123" not in str(info.value)


def test_the_key_is_written_and_printed_nowhere(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("GRISTMILL_TEST_KEY", KEY)
    server = Server()
    # an endpoint that echoes the key back in a malformed answer: it must not reach the labels either
    server.respond = lambda n, body: (200, json.dumps({**GOOD, "domain": "technology" if n % 3 else f"key {KEY}"}), 0)
    caplog.set_level(logging.DEBUG)
    try:
        spec = write_spec(tmp_path, server.url, ", api_key_env: GRISTMILL_TEST_KEY, reask_on_malformed: 0")
        assert main(["dataman", "build", spec]) == 0
    finally:
        server.httpd.shutdown()
    assert server.headers and all(h["Authorization"] == f"Bearer {KEY}" for h in server.headers)
    captured = capsys.readouterr()
    assert "DataMan students written to" in captured.out
    assert KEY not in captured.out + captured.err + caplog.text
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert {f.name for f in written} >= {"cache.sqlite", "labels.parquet", "report.json", "overall_score.bin"}
    for f in written:
        assert KEY.encode() not in f.read_bytes(), f
    labels = pq.read_table(tmp_path / "students" / "labels.parquet").to_pylist()
    assert any(r["error"] and "***" in r["error"] for r in labels)
    assert KEY not in json.dumps(labels)
