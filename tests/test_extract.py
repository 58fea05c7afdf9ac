"""extract: charset repair, rejects with reasons, size and time limits."""

import time

import pytest

from pipelines.stages import extract
from pipelines.stages.charset import decode_html
from pipelines.stages.extract import ExtractConfig
from pipelines.stages.limits import DocumentTimeout, time_limit
from tests import warc_factory as wf

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


def test_time_limit_interrupts_python_work():
    with pytest.raises(DocumentTimeout):
        with time_limit(0.2):
            while True:
                pass


def test_trafilatura_extractor():
    result = run([raw_doc(wf.html_page(wf.PROSE * 3).encode())], extractor="trafilatura")
    assert len(result.docs) == 1 and wf.PROSE[1] in result.docs[0]["text"]
