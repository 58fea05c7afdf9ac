"""extract: charset repair, rejects with reasons, size and time limits (C code included)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from resiliparse.extract.html2text import extract_plain_text

from pipelines.stages import extract, extractor_process
from pipelines.stages.charset import decode_html
from pipelines.stages.extract import ExtractConfig
from tests import warc_factory as wf

ROOT = Path(__file__).resolve().parents[1]

GERMAN = "Größere Übersicht über die Änderungen: Maßnahmen für Straßen und Brücken."
KOREAN = "아파치 HTTP 서버 문서는 여러 언어로 번역되어 있습니다."


def raw_doc(body: bytes, status=200, content_type="text/html; charset=utf-8", i=0):
    return {"id": f"d{i}", "url": f"https://example.org/{i}", "source": "s", "input_file": "f.warc.gz",
            "input_offset": i, "date": None, "metadata": None, "text": None, "payload": body,
            "payload_size": len(body), "http_status": status, "http_content_type": content_type}


def html(text: str, meta: str = "") -> str:
    return f"<html><head>{meta}<title>t</title></head><body><p>{text}</p></body></html>"


@pytest.mark.parametrize(
    "payload, header, expected_source",
    [
        (html(GERMAN).encode("utf-8"), "text/html; charset=iso-8859-1", "valid_utf8"),  # header lies
        (html(GERMAN).encode("cp1252"), "text/html; charset=utf-8", "detected"),  # header lies the other way
        (html(GERMAN).encode("iso-8859-1"), "text/html; charset=ISO-8859-1", "http"),
        (html(GERMAN).encode("iso-8859-1"), "text/html", "detected"),  # no charset anywhere
        (html(KOREAN, '<meta charset="euc-kr">').encode("euc-kr"), "text/html", "meta"),
        (html(KOREAN).encode("euc-kr"), "text/html; charset=EUC-KR", "http"),
        (b"\xef\xbb\xbf" + html(GERMAN).encode("utf-8"), None, "bom"),
    ],
)
def test_charset_repair(payload, header, expected_source):
    text, codec, source = decode_html(payload, header)
    expected = KOREAN if "euc-kr" in (header or "").lower() or b"euc-kr" in payload else GERMAN
    assert expected in text
    assert source == expected_source, (codec, source)


def test_korean_without_any_declaration_is_detected():
    long_korean = html(" ".join([KOREAN] * 20)).encode("euc-kr")
    text, _, source = decode_html(long_korean, "text/html")
    assert KOREAN in text and source == "detected"


def run(docs, **cfg):
    return extract.run(docs, ExtractConfig(**cfg))


def test_rejects_have_reasons():
    page = wf.html_page(wf.PROSE).encode()
    docs = [
        raw_doc(page, i=0),
        raw_doc(page, status=404, i=1),
        raw_doc(page, status=301, i=2),
        raw_doc(b"%PDF-1.7 binary", content_type="application/pdf", i=3),
        raw_doc(b"", i=4),
        raw_doc(b"<html>\x00\x01\x02\x00 binary junk</html>", i=5),
        raw_doc(b"<html><body><script>var x = 1;</script></body></html>", i=6),
        raw_doc(page, content_type=None, i=7),
    ]
    result = run(docs)
    reasons = {r["id"]: (r["reason"], r["detail"]) for r in result.rejects}
    assert reasons == {
        "d1": ("http_status", "404"), "d2": ("http_status", "301"), "d3": ("content_type", "application/pdf"),
        "d4": ("empty_payload", None), "d5": ("binary_payload", None), "d6": ("no_text", None),
        "d7": ("content_type", "missing"),
    }
    assert [d["id"] for d in result.docs] == ["d0"]
    doc = result.docs[0]
    assert wf.PROSE[0] in doc["text"] and "payload" not in doc and doc["charset"] == "utf-8"
    assert all(r["input_file"] == "f.warc.gz" and r["input_offset"] is not None for r in result.rejects)


def test_50mb_page_is_rejected_without_being_parsed():
    huge = b"<html><body>" + b"<div>" * 5_000_000 + b"x" * 25_000_000 + b"</body></html>"
    assert len(huge) > 50_000_000
    began = time.perf_counter()
    result = run([raw_doc(huge)])
    assert time.perf_counter() - began < 5
    assert result.rejects[0]["reason"] == "too_large"


def nested_divs(depth: int) -> bytes:
    """resiliparse takes time quadratic in the nesting, all of it in C: 30,000 levels take about half a minute
    (100,000 are minutes), and no signal interrupts it."""
    return ("<html><body>" + "<div>" * depth + "deep" + "</div>" * depth + "</body></html>").encode()


def in_process_text(body: bytes) -> str:
    """What extraction gives without the extractor process (the stage's settings by default)."""
    html_text, _, _ = decode_html(body, "text/html; charset=utf-8")
    return extract_plain_text(html_text, main_content=True, alt_texts=False, links=False, comments=False,
                              list_bullets=True).strip()


def pages(n: int) -> list[bytes]:
    return [wf.html_page([f"Page {i}."] + wf.PROSE[i % len(wf.PROSE):]).encode() for i in range(n)]


def test_time_limit_holds_in_c_code():
    normal = pages(4)
    docs = [raw_doc(normal[0], i=0), raw_doc(normal[1], i=1), raw_doc(nested_divs(30_000), i=2),
            raw_doc(normal[2], i=3), raw_doc(normal[3], i=4)]
    began = time.perf_counter()
    result = run(docs, timeout_seconds=0.5)
    assert time.perf_counter() - began < 8  # not the half minute resiliparse would take
    assert [(r["id"], r["reason"], r["detail"]) for r in result.rejects] == [("d2", "timeout", "exceeded 0.5s")]
    assert not result.errors
    assert [d["id"] for d in result.docs] == ["d0", "d1", "d3", "d4"]  # the shard goes on, in order
    assert [d["text"] for d in result.docs] == [in_process_text(normal[i]) for i in range(4)]
    assert len(extractor_process.child_pids()) == 1  # the killed one was replaced, not left behind


def test_a_crash_in_the_extractor_costs_one_document():
    normal = pages(3)
    docs = [raw_doc(normal[0], i=0), raw_doc(nested_divs(30_000), i=1), raw_doc(normal[1], i=2),
            raw_doc(normal[2], i=3)]
    stop = threading.Event()

    def crash_on_the_slow_page():  # as a segfault in C code would
        while not stop.is_set():
            with extractor_process._children_lock:
                children = list(extractor_process._children)
            for child in children:
                if child.process.poll() is None and child.progress()[0] == 1:
                    time.sleep(0.2)
                    os.kill(child.process.pid, signal.SIGKILL)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=crash_on_the_slow_page)
    killer.start()
    try:
        result = run(docs, timeout_seconds=60)
    finally:
        stop.set()
        killer.join()
    assert [(e["record_id"], e["error"]) for e in result.errors] == [("d1", "ExtractorDied")]
    assert "-9" in result.errors[0]["message"]
    assert not result.rejects
    assert [d["text"] for d in result.docs] == [in_process_text(p) for p in normal]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("ending", ["killed", "exits"])
def test_no_extractor_outlives_its_worker(ending):
    worker = textwrap.dedent(f"""
        import sys
        from pipelines.stages import extract, extractor_process
        from tests.test_extract import nested_divs, pages, raw_doc
        extract.run([raw_doc(pages(1)[0])], extract.ExtractConfig())
        print(extractor_process.child_pids()[0], flush=True)
        sys.stdin.readline()
        if {ending == "killed"!r}:
            extract.run([raw_doc(nested_divs(30_000))], extract.ExtractConfig(timeout_seconds=600))
    """)
    proc = subprocess.Popen([sys.executable, "-c", worker], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        child = int(proc.stdout.readline())
        assert alive(child)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if ending == "killed":
            time.sleep(0.5)  # the extractor is busy in C code now
            proc.kill()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_trafilatura_extractor():
    result = run([raw_doc(wf.html_page(wf.PROSE * 3).encode())], extractor="trafilatura")
    assert len(result.docs) == 1 and wf.PROSE[1] in result.docs[0]["text"]


def test_trafilatura_time_limit():
    slow = wf.html_page([f"Paragraph {i} of a long page, with a few words." for i in range(20_000)]).encode()  # ~3 s
    docs = [raw_doc(pages(1)[0], i=0), raw_doc(slow, i=1), raw_doc(pages(1)[0], i=2)]
    result = run(docs, extractor="trafilatura", timeout_seconds=0.5)
    assert [(r["id"], r["reason"]) for r in result.rejects] == [("d1", "timeout")]
    assert [d["id"] for d in result.docs] == ["d0", "d2"]
