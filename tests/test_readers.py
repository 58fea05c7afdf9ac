"""Readers: every record is either yielded or lands in `errors` with file, offset and reason."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipelines.readers import SourceConfig, read_shard
from tests import warc_factory as wf
from tests.conftest import SAMPLE


def read(fmt, path, **kw):
    errors = []
    src = SourceConfig(name="s", paths=[str(path)], format=fmt, **kw)
    docs = list(read_shard(src, str(path), errors))
    return docs, errors


def pages(n):
    return [wf.request(f"https://example.org/{i}") + wf.response(f"https://example.org/{i}",
                                                                 wf.html_page(wf.PROSE).encode()) for i in range(n)]


def test_sample_warc_reads_response_records_only():
    path = sorted(SAMPLE.glob("*.warc.gz"))[0]
    docs, errors = read("warc", path)
    assert errors == []
    assert len(docs) > 200
    assert all(d["http_status"] == 200 and d["payload"] for d in docs)
    assert len({d["id"] for d in docs}) == len(docs)  # WARC-Record-IDs are unique and stable
    assert all(d["url"].startswith("https://") for d in docs)
    offsets = [d["input_offset"] for d in docs]
    assert offsets == sorted(offsets) and offsets[0] > 0  # after the warcinfo record


def test_garbage_member_between_records_resynchronises(tmp_path):
    members = pages(6)
    garbage = b"\x1f\x8b\x08\x00" + b"this is not deflate data" * 40 + b"\x00" * 100
    path = tmp_path / "bad.warc.gz"
    path.write_bytes(b"".join(members[:3]) + garbage + b"".join(members[3:]))
    docs, errors = read("warc", path)
    assert [d["url"] for d in docs] == [f"https://example.org/{i}" for i in range(6)]
    assert len(errors) == 1
    bad_start = len(b"".join(members[:3]))
    assert errors[0]["input_offset"] == bad_start
    assert errors[0]["input_file"] == str(path) and "corrupt data" in errors[0]["message"]


def test_garbage_without_gzip_magic_resynchronises(tmp_path):
    members = pages(4)
    path = tmp_path / "bad.warc.gz"
    path.write_bytes(members[0] + b"random bytes, not gzip" * 10 + b"".join(members[1:]))
    docs, errors = read("warc", path)
    assert len(docs) == 4 and len(errors) == 1


def test_truncated_gzip_keeps_earlier_records(tmp_path):
    data = b"".join(pages(5))
    path = tmp_path / "trunc.warc.gz"
    path.write_bytes(data[: len(data) - 150])
    docs, errors = read("warc", path)
    assert len(docs) == 4
    assert len(errors) == 1 and errors[0]["input_file"] == str(path)
    assert errors[0]["input_offset"] is not None


def test_truncated_sample_file(tmp_path):
    data = sorted(SAMPLE.glob("*.warc.gz"))[0].read_bytes()
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data[: len(data) // 2])
    docs, errors = read("warc", path)
    assert len(docs) > 50 and len(errors) == 1


def test_non_warc_file_is_one_error(tmp_path):
    path = tmp_path / "notes.warc.gz"
    path.write_bytes(gzip.compress(b"just some text\n" * 100))
    docs, errors = read("warc", path)
    assert docs == []
    assert len(errors) == 1 and "no WARC record found" in errors[0]["message"]
    plain = tmp_path / "plain.warc"
    plain.write_text("hello\n" * 50)
    docs, errors = read("warc", plain)
    assert docs == [] and len(errors) == 1


def test_uncompressed_warc(tmp_path):
    path = tmp_path / "plain.warc"
    path.write_bytes(b"".join(gzip.decompress(m) for m in pages(3)))
    docs, errors = read("warc", path)
    assert len(docs) == 3 and errors == []


def test_wet_conversion_records(tmp_path):
    path = tmp_path / "x.warc.wet.gz"
    text = "Plain extracted text.\nSecond line with ünïcode."
    path.write_bytes(gzip.compress(wf.warc_record("conversion", "https://example.org/a", text.encode())))
    docs, errors = read("wet", path)
    assert errors == [] and docs[0]["text"] == text and docs[0]["url"] == "https://example.org/a"


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz", "jsonl.zst"])
def test_jsonl_with_bad_lines(tmp_path, suffix):
    lines = [
        json.dumps({"id": "a", "text": "first", "url": "https://a", "lang": "en"}).encode(),
        b'{"id": "b", "text": "bad \xff\xfe utf8"}',
        b"{not json",
        json.dumps({"text": "no id here"}).encode(),
        json.dumps({"id": "c", "body": "no text field"}).encode(),
        json.dumps({"id": "d", "text": "last"}).encode(),
        b'{"id": "e", "text": "lone \\ud800 surrogate"}',
    ]
    raw = b"\n".join(lines) + b"\n"
    path = tmp_path / f"docs.{suffix}"
    if suffix.endswith(".gz"):
        raw = gzip.compress(raw)
    elif suffix.endswith(".zst"):
        raw = zstandard.ZstdCompressor().compress(raw)
    path.write_bytes(raw)
    docs, errors = read("jsonl", path)
    assert [d["text"] for d in docs] == ["first", "no id here", "last"]
    assert docs[0]["metadata"] == '{"lang": "en"}'
    assert docs[1]["id"] == f"s/{path}#3"  # no id field: file + line
    assert [(e["input_offset"], e["error"]) for e in errors] == [(1, "InvalidUtf8"), (2, "InvalidJson"),
                                                                 (4, "MissingField"), (6, "InvalidUnicode")]


def test_truncated_jsonl_gz(tmp_path):
    raw = gzip.compress(b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(2000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(raw[: len(raw) // 2])
    docs, errors = read("jsonl", path)
    assert 0 < len(docs) < 2000 and len(errors) == 1


def test_parquet(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["one", "two"], "score": [1.5, 2.5]}), path)
    docs, errors = read("parquet", path)
    assert errors == [] and [d["id"] for d in docs] == ["x", "y"]
    assert json.loads(docs[1]["metadata"]) == {"score": 2.5}
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    docs, errors = read("parquet", bad)
    assert docs == [] and len(errors) == 1 and errors[0]["input_file"] == str(bad)
