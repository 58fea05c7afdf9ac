"""A release over damaged inputs: nothing crashes, every record lands somewhere, the funnel adds up."""

import gzip
import json
import subprocess
import sys

import pytest

from pipelines import stats
from tests import warc_factory as wf

PAGE = wf.html_page(wf.PROSE).encode()


def pages(prefix, n):
    return [wf.request(f"https://{prefix}.example/{i}") + wf.response(f"https://{prefix}.example/{i}", PAGE)
            for i in range(n)]


@pytest.fixture(scope="module")
def bad_release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    inputs = tmp / "in"
    inputs.mkdir()
    latin = wf.html_page(["Größere Übersicht über die Änderungen an den Straßen."] + wf.PROSE).encode("latin-1")
    (inputs / "a-mixed.warc.gz").write_bytes(b"".join([
        *pages("good", 2),
        wf.response("https://mixed.example/404", PAGE, status=404, reason="Not Found"),
        wf.response("https://mixed.example/301", b"", status=301, reason="Moved"),
        wf.response("https://mixed.example/pdf", b"%PDF-1.4\x00\x01binary", content_type="application/pdf"),
        wf.response("https://mixed.example/bin", b"\x00\x01\x02\x03" * 100, content_type="text/html"),
        wf.response("https://mixed.example/empty", b""),
        wf.response("https://mixed.example/latin", latin, content_type="text/html"),
        wf.response("https://mixed.example/huge", b"<html><body>" + b"<p>x</p>" * 6_500_000 + b"</body></html>"),
        *pages("after", 1),
    ]))
    good = pages("b", 6)
    (inputs / "b-garbage.warc.gz").write_bytes(b"".join(good[:3]) + b"\x1f\x8b\x08garbage!" * 50 + b"".join(good[3:]))
    whole = b"".join(pages("c", 4))
    (inputs / "c-truncated.warc.gz").write_bytes(whole[:-200])
    (inputs / "d-notwarc.warc.gz").write_bytes(gzip.compress(b"<html>not a warc at all</html>\n" * 50))
    (inputs / "e.jsonl").write_bytes(b"\n".join([
        json.dumps({"id": "j1", "text": " ".join(wf.PROSE)}).encode(),
        b'{"id": "j2", "text": "broken \xc3\x28 utf-8"}',
        json.dumps({"id": "j3", "text": ""}).encode(),
    ]) + b"\n")
    config = tmp / "bad.yaml"
    config.write_text(f"""
release: bad
output: {tmp / 'out'}
runner: {{kind: local, workers: 2}}
sources:
  - {{name: crawl, paths: ["{inputs}/*.warc.gz"], format: warc}}
  - {{name: docs, paths: ["{inputs}/*.jsonl"], format: jsonl}}
stages:
  extract: {{}}
  filter: {{language: {{enabled: false}}, gopher_quality: {{enabled: false}}, c4: {{enabled: false}},
            fineweb: {{enabled: false}}, gopher_repetition: {{enabled: false}}}}
""")
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(config), "--quiet"],
                            capture_output=True, text=True)
    return result, str(tmp / "out"), inputs


def query(out, sql):
    return stats.connect(out).execute(sql).fetchall()


def test_run_completes_and_adds_up(bad_release):
    result, out, _ = bad_release
    assert result.returncode == 0, result.stderr
    f = stats.funnel(out)
    assert f["adds_up"], f
    assert "adds up" in result.stdout


def test_errors_name_file_offset_and_reason(bad_release):
    _, out, inputs = bad_release
    rows = query(out, "SELECT input_file, input_offset, error, message FROM errors ORDER BY input_file")
    by_file = {}
    for path, offset, kind, message in rows:
        by_file.setdefault(path.rsplit("/", 1)[-1], []).append((offset, kind, message))
    assert set(by_file) == {"b-garbage.warc.gz", "c-truncated.warc.gz", "d-notwarc.warc.gz", "e.jsonl"}
    assert by_file["b-garbage.warc.gz"][0][0] == len(b"".join(pages("b", 3)))  # where the garbage starts
    assert "no WARC record found" in by_file["d-notwarc.warc.gz"][0][2]
    assert by_file["e.jsonl"] == [(1, "InvalidUtf8", by_file["e.jsonl"][0][2])]
    assert all(offset is not None for path, offset, *_ in rows if not path.endswith("d-notwarc.warc.gz"))


def test_records_after_damage_are_kept(bad_release):
    _, out, _inputs = bad_release
    urls = {u for (u,) in query(out, "SELECT url FROM docs_extract")}
    assert {f"https://b.example/{i}" for i in range(6)} <= urls  # 3 of them after the garbage
    assert {f"https://c.example/{i}" for i in range(3)} <= urls  # all but the truncated one
    assert "https://after.example/0" in urls and "https://mixed.example/latin" in urls


def test_rejects_have_reasons(bad_release):
    _, out, _ = bad_release
    reasons = dict(query(out, "SELECT url, reason || coalesce(':' || detail, '') FROM rejects WHERE stage='extract'"))
    assert reasons["https://mixed.example/404"] == "http_status:404"
    assert reasons["https://mixed.example/301"] == "http_status:301"
    assert reasons["https://mixed.example/pdf"] == "content_type:application/pdf"
    assert reasons["https://mixed.example/bin"] == "binary_payload"
    assert reasons["https://mixed.example/empty"] == "empty_payload"
    assert reasons["https://mixed.example/huge"].startswith("too_large")
    offsets = query(out, "SELECT count(*) FROM rejects WHERE input_offset IS NULL OR input_file IS NULL")
    assert offsets == [(0,)]


def test_missing_charset_is_repaired(bad_release):
    _, out, _ = bad_release
    [(text, source)] = query(out, "SELECT text, charset_source FROM docs_extract WHERE url LIKE '%/latin'")
    assert "Größere Übersicht" in text and source == "detected"


def test_jsonl_goes_straight_to_filter(bad_release):
    _, out, _ = bad_release
    ids = {i for (i,) in query(out, "SELECT id FROM docs_filter WHERE source = 'docs'")}
    assert ids == {"j1"}  # j2 is an error, j3 has no text
    assert query(out, "SELECT reason FROM rejects WHERE id = 'j3'") == [("empty_text",)]
    assert query(out, "SELECT count(*) FROM docs_extract WHERE source = 'docs'") == [(0,)]
