"""The DataMan teacher against a real HTTP server on loopback: answers, retries, malformed answers,
timeouts, a dead endpoint, the cache."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scorers.dataman import DOMAINS, RATINGS
from scorers.dataman import prompt as prompt_module
from scorers.dataman.prompt import MalformedAnswer, parse_answer, truncate_head_tail
from scorers.dataman.teacher import Teacher, TeacherConfig

GOOD = {**{r: 4 for r in RATINGS}, "domain": "technology"}


class Server:
    """Each request is answered by `self.respond(request_number, body) -> (status, content, delay)`."""

    def __init__(self):
        self.seen = 0
        self.respond = lambda n, body: (200, json.dumps(GOOD), 0)
        lock, server = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    server.seen += 1
                    n = server.seen
                status, content, delay = server.respond(n, body)
                time.sleep(delay)
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode() if status == 200 else b'{"error": "x"}')

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
    monkeypatch.setattr("scorers.dataman.teacher.PROMPT_VERSION", "dataman-v2")
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
    with pytest.raises(MalformedAnswer, match="overall_score"):
        parse_answer(json.dumps({k: v for k, v in GOOD.items() if k != "overall_score"}))
