"""Readers: every record is either yielded or lands in `errors` with file, offset and reason."""

import datetime
import gzip
import json
import subprocess
import sys
import uuid
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipelines.documents import DOC_FIELDS, doc_schema
from pipelines.readers import SourceConfig, read_shard
from tests import warc_factory as wf
from tests.conftest import ROOT, SAMPLE


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


# --- hostile inputs (issue 13) ---


def member_with_junk(uri: str, junk: bytes) -> bytes:
    """One gzip member holding a response record followed by `junk` (inside the same member)."""
    record = gzip.decompress(wf.response(uri, wf.html_page(wf.PROSE).encode()))
    return gzip.compress(record + junk, mtime=0)


def responses(n):
    return [wf.response(f"https://example.org/{i}", wf.html_page(wf.PROSE).encode()) for i in range(n)]


def test_junk_inside_a_member_is_one_error_and_the_next_member_is_read(tmp_path):
    members = responses(4)  # a response right after the damaged member (it used to be skipped)
    bad = member_with_junk("https://example.org/junk", bytes(range(100)))
    path = tmp_path / "junk.warc.gz"
    path.write_bytes(b"".join(members[:2]) + bad + b"".join(members[2:]))
    docs, errors = read("warc", path)
    assert [d["url"] for d in docs] == [f"https://example.org/{i}" for i in (0, 1)] + ["https://example.org/junk"] + [
        f"https://example.org/{i}" for i in (2, 3)]
    assert len(errors) == 1 and errors[0]["error"] == "CorruptWarc"
    assert errors[0]["input_offset"] == len(b"".join(members[:2]))  # the member that holds the junk


@pytest.mark.parametrize("junk", [b"\x00" * 100, b"\x1f\x8b\x08\x17" + bytes(range(96)), b"no gzip magic here" * 6],
                         ids=["zeros", "gzip-header", "text"])
def test_junk_between_members_is_one_error(tmp_path, junk):
    members = responses(4)
    for at in (0, 2, 4):  # before the first member, in the middle, at the end
        path = tmp_path / f"junk{at}.warc.gz"
        path.write_bytes(b"".join(members[:at]) + junk + b"".join(members[at:]))
        docs, errors = read("warc", path)
        assert [d["url"] for d in docs] == [f"https://example.org/{i}" for i in range(4)], at
        assert len(errors) == 1, (at, errors)
        assert errors[0]["input_offset"] == len(b"".join(members[:at]))


@pytest.mark.parametrize("junk", [b"\x00" * 100, b"\x1f\x8b\x08\x00" + bytes(range(96)), b"junk!\r\n" * 14],
                         ids=["zeros", "gzip-magic", "text-lines"])
def test_junk_between_plain_records_is_one_error_where_it_starts(tmp_path, junk):
    records = [gzip.decompress(m) for m in pages(4)]  # request + response members, each decompressed
    for at in (0, 2, 4):
        path = tmp_path / f"junk{at}.warc"
        path.write_bytes(b"".join(records[:at]) + junk + b"".join(records[at:]))
        docs, errors = read("warc", path)
        assert [d["url"] for d in docs] == [f"https://example.org/{i}" for i in range(4)], at
        assert len(errors) == 1, (at, errors)
        assert errors[0]["input_offset"] == len(b"".join(records[:at])), (at, errors)


def bomb_member(uri: str, inflated: int) -> bytes:
    """A gzip member whose record declares a 1000-byte block but that inflates to `inflated` bytes."""
    block = wf.http_response(b"<html><body>" + b" " * 2000)[:1000]
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, uri)}>\r\n"
            f"WARC-Target-URI: {uri}\r\nContent-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(block)}\r\n\r\n").encode()
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)
    out = [gz.compress(head + block + b"\r\n\r\n")]
    zeros = bytes(1 << 20)
    out += [gz.compress(zeros) for _ in range(inflated >> 20)]
    return b"".join(out) + gz.flush()


BOMB_CHECK = """
import resource, sys
from pipelines.readers import SourceConfig, read_shard
fmt, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
src = SourceConfig(name="s", paths=[path], format=fmt, **({"max_record_bytes": limit} if fmt == "jsonl" else {}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
errors = []
docs = [(d["url"] if fmt == "warc" else d["id"], d.get("payload_size")) for d in read_shard(src, path, errors, limit)]
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(repr((docs, [(e["input_offset"], e["error"]) for e in errors], grew // 1024)))
"""


def read_in_subprocess(fmt: str, path, limit: int):
    """Reads a file in a fresh interpreter: (docs, errors, MiB its peak RSS grew by while reading)."""
    import ast

    result = subprocess.run([sys.executable, "-c", BOMB_CHECK, fmt, str(path), str(limit)], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_gzip_bomb_record_is_too_large_in_bounded_memory(tmp_path):
    members = pages(2)
    path = tmp_path / "bomb.warc.gz"
    path.write_bytes(members[0] + bomb_member("https://example.org/bomb", 200 << 20) + members[1])
    assert path.stat().st_size < 1_000_000
    limit = 1_000_000
    docs, errors, grew_mib = read_in_subprocess("warc", path, limit)
    assert [u for u, _ in docs] == ["https://example.org/0", "https://example.org/bomb", "https://example.org/1"]
    assert docs[1][1] > limit and docs[0][1] < limit  # the extract stage rejects it as too_large
    assert errors == []
    assert grew_mib < 64, grew_mib  # was: the whole member inflated in memory (400 MiB here)


def test_gzip_bomb_doc_is_a_too_large_reject(tmp_path):
    from pipelines.stages import extract

    path = tmp_path / "bomb.warc.gz"
    path.write_bytes(bomb_member("https://example.org/bomb", 4 << 20) + pages(1)[0])
    errors = []
    src = SourceConfig(name="s", paths=[str(path)], format="warc")
    docs = list(read_shard(src, str(path), errors, 1_000_000))
    assert errors == [] and len(docs) == 2
    result = extract.run(docs[:1], extract.ExtractConfig(max_payload_bytes=1_000_000))
    assert [r["reason"] for r in result.rejects] == ["too_large"] and result.docs == []


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz"])
def test_jsonl_over_long_line_is_an_error_and_reading_goes_on(tmp_path, suffix):
    raw = b"\n".join([
        json.dumps({"id": "a", "text": "first"}).encode(),
        json.dumps({"id": "big", "text": "x" * 1_000_000}).encode(),
        json.dumps({"id": "b", "text": "after the long line"}).encode(),
        b'{"id": "c", "text": "' + b"y" * 977 + b'"}',  # 1000 bytes: just fits
    ]) + b"\n"
    path = tmp_path / f"long.{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    docs, errors = read("jsonl", path, max_record_bytes=1000)
    assert [d["id"] for d in docs] == ["a", "b", "c"]
    assert [(e["input_offset"], e["error"]) for e in errors] == [(1, "TooLarge")]
    assert f"{len(json.dumps({'id': 'big', 'text': 'x' * 1_000_000}))} bytes" in errors[0]["message"]
    assert errors[0]["input_file"] == str(path)


def test_jsonl_huge_line_is_read_past_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(b'{"id": "huge", "text": "')
        chunk = b"z" * (1 << 20)
        for _ in range(300):
            fh.write(chunk)
        fh.write(b'"}\n{"id": "next", "text": "kept"}\n')
    docs, errors, grew_mib = read_in_subprocess("jsonl", path, 1 << 20)
    assert docs == [("next", None)] and errors == [(0, "TooLarge")]
    assert grew_mib < 64, grew_mib


def test_parquet_over_long_text_is_an_error(tmp_path):
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({"id": ["a", "big", "b"], "text": ["one", "é" * 600, "two"]}), path)
    docs, errors = read("parquet", path, max_record_bytes=1000)  # 600 characters, 1200 bytes
    assert [d["id"] for d in docs] == ["a", "b"]
    assert [(e["input_offset"], e["error"]) for e in errors] == [(1, "TooLarge")]


def write_docs(docs, path):
    """Documents as the first stage writes them (the reader's columns, under the documents schema)."""
    pq.write_table(pa.Table.from_pylist([{f.name: d[f.name] for f in DOC_FIELDS} for d in docs],
                                        schema=doc_schema([])), path)
    return pq.read_table(path).to_pylist()


def test_jsonl_field_types_are_coerced_or_errors(tmp_path):
    lines = [
        {"id": 1, "text": "int id", "url": 5, "date": 20240101},
        {"id": "b", "text": "float url", "url": 1.5, "date": True},
        {"id": {"x": 1}, "text": "object id"},
        {"id": "d", "text": "list url", "url": ["https://a"]},
        {"id": "e", "text": {"nested": "text"}},
        {"id": "f", "text": 42},
        {"id": "g", "text": "object date", "date": {"y": 2024}},
        {"id": "h", "text": "fine", "url": "https://h", "date": "2024-01-01"},
    ]
    path = tmp_path / "types.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    docs, errors = read("jsonl", path)
    assert [(d["id"], d["url"], d["date"], d["text"]) for d in docs] == [
        ("1", "5", "20240101", "int id"), ("b", "1.5", "true", "float url"), ("f", None, None, "42"),
        ("h", "https://h", "2024-01-01", "fine")]
    assert [(e["input_offset"], e["error"]) for e in errors] == [(2, "WrongType"), (3, "WrongType"), (4, "WrongType"),
                                                                 (6, "WrongType")]
    assert ["'id'" in errors[0]["message"], "'url'" in errors[1]["message"], "'text'" in errors[2]["message"],
            "'date'" in errors[3]["message"]] == [True] * 4
    assert [d["url"] for d in write_docs(docs, tmp_path / "docs.parquet")] == ["5", "1.5", None, "https://h"]


def test_parquet_column_types_are_coerced_or_errors(tmp_path):
    path = tmp_path / "types.parquet"
    pq.write_table(pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "text": ["one", "two", "three"],
        "url": pa.array([{"host": "a"}, None, {"host": "c"}]),
        "date": pa.array([datetime.date(2024, 1, 1), None, None]),
    }), path)
    docs, errors = read("parquet", path)
    assert [(d["id"], d["url"], d["date"]) for d in docs] == [("2", None, None)]
    assert [(e["input_offset"], e["error"]) for e in errors] == [(0, "WrongType"), (2, "WrongType")]
    binary = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"id": pa.array([b"x1", b"\xff"], pa.binary()), "text": ["one", "two"],
                             "url": pa.array([7, 8], pa.int32())}), binary)
    docs, errors = read("parquet", binary)
    assert [(d["id"], d["url"]) for d in docs] == [("x1", "7")]
    assert [(e["input_offset"], e["error"]) for e in errors] == [(1, "InvalidUtf8")]
    assert write_docs(docs, tmp_path / "docs.parquet")[0]["url"] == "7"


def test_jsonl_unencodable_metadata_and_hostile_json(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n".join([
        b'{"id": "a", "text": "fine", "note": "lone \\ud800 surrogate"}',
        b'{"id": "b", "text": ' + b"1" * 5000 + b"}",  # an integer Python will not parse
        b"[" * 100_000,  # nesting deeper than the JSON parser goes
        b'{"id": "c", "text": "after"}',
    ]) + b"\n")
    docs, errors = read("jsonl", path)
    assert [d["id"] for d in docs] == ["a", "c"]
    assert json.loads(docs[0]["metadata"]) == {"note": "lone \ud800 surrogate"}
    assert [(e["input_offset"], e["error"]) for e in errors] == [(1, "InvalidJson"), (2, "InvalidJson")]
    write_docs(docs, tmp_path / "docs.parquet")


def test_truncated_jsonl_zst_keeps_what_was_read(tmp_path):
    raw = zstandard.ZstdCompressor().compress(b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n"
                                                       for i in range(50_000)))
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(raw[: len(raw) // 2])
    docs, errors = read("jsonl", path)
    assert 0 < len(docs) < 50_000 and [e["error"] for e in errors][-1] == "TruncatedFile"
    assert {e["error"] for e in errors[:-1]} <= {"InvalidJson"}  # the last line may be cut too
    assert f"after line {len(docs) + len(errors) - 2} are lost" in errors[-1]["message"]
    multi = tmp_path / "frames.jsonl.zst"  # several frames (pzstd, zstd --long ...): complete, no error
    multi.write_bytes(raw + zstandard.ZstdCompressor(write_checksum=True, write_content_size=False).compress(b"{}\n"))
    docs, errors = read("jsonl", multi)
    assert len(docs) == 50_000 and [e["error"] for e in errors] == ["MissingField"]


def test_whole_file_gzip_and_multi_record_members(tmp_path):
    """Not one member per record: the member checks must not take the other records for junk."""
    records = [gzip.decompress(m) for m in responses(6)]
    big = [gzip.decompress(wf.response(f"https://example.org/big{i}", bytes(range(256)) * 600)) for i in range(4)]
    whole = tmp_path / "whole.warc.gz"
    whole.write_bytes(gzip.compress(b"".join(records + big)))  # one member, larger than fastwarc's buffer
    docs, errors = read("warc", whole)
    assert len(docs) == 10 and errors == []
    grouped = tmp_path / "grouped.warc.gz"
    grouped.write_bytes(gzip.compress(b"".join(records[:3])) + gzip.compress(b"".join(records[3:])))
    docs, errors = read("warc", grouped)
    assert len(docs) == 6 and errors == []
    grouped.write_bytes(gzip.compress(b"".join(records[:3])) + gzip.compress(b"".join(records[3:]) + b"junk" * 30))
    docs, errors = read("warc", grouped)
    assert len(docs) == 6 and len(errors) == 1


def test_wet_gzip_bomb_is_an_error_row(tmp_path):
    text = b"some extracted text\n" * 10
    head = (f"WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\n"
            f"WARC-Target-URI: https://example.org/bomb\r\nContent-Length: {len(text)}\r\n\r\n").encode()
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)
    bomb = gz.compress(head + text + b"\r\n\r\n") + b"".join(gz.compress(bytes(1 << 20)) for _ in range(4)) + gz.flush()
    path = tmp_path / "bomb.warc.wet.gz"
    path.write_bytes(bomb + gzip.compress(wf.warc_record("conversion", "https://example.org/a", b"kept")))
    errors = []
    docs = list(read_shard(SourceConfig(name="s", paths=[str(path)], format="wet"), str(path), errors, 1_000_000))
    assert [d["text"] for d in docs] == ["kept"]
    assert [(e["input_offset"], e["error"]) for e in errors] == [(0, "TooLarge")]
