"""Fuzzing the readers (and the config loader) with hypothesis: whatever the bytes, a reader yields
documents that Parquet can hold and appends error rows; it never raises or hangs. Where the input
says how many records it holds, every one of them is either read or an error row (read = kept + errors).

Derandomized, so a run is the same everywhere; sized to run in a few seconds per test.
"""

import contextlib
import gzip
import io
import json
import signal
import string

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.documents import DOC_FIELDS, ERROR_SCHEMA, doc_schema
from pipelines.readers import SourceConfig, read_shard
from tests import warc_factory as wf

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=120,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
READ_SECONDS = 20  # one small file: anything slower is a hang


@contextlib.contextmanager
def time_limit(seconds: int):
    def stop(*_):
        raise TimeoutError(f"reader still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def read_checked(fmt: str, path, limit: int = 1_000_000, **source) -> tuple[list[dict], list[dict]]:
    """Reads a file; checks that every document and error row fits its Parquet schema."""
    src = SourceConfig(name="fuzz", paths=[str(path)], format=fmt, **source)
    errors: list[dict] = []
    with time_limit(READ_SECONDS):
        docs = list(read_shard(src, str(path), errors, limit))
    table = pa.Table.from_pylist([{f.name: d[f.name] for f in DOC_FIELDS} for d in docs], schema=doc_schema([]))
    pq.write_table(table, io.BytesIO())  # lone surrogates and the like fail here, not in a stage
    assert all(d["id"] and d["input_file"] == str(path) and isinstance(d["input_offset"], int) for d in docs)
    if fmt == "warc":
        assert all(isinstance(d["payload"], bytes) and isinstance(d["payload_size"], int) for d in docs)
    else:
        assert all(isinstance(d["text"], str) for d in docs)
    pq.write_table(pa.Table.from_pylist(errors, schema=ERROR_SCHEMA), io.BytesIO())
    assert all(e["stage"] == "read" and e["input_file"] == str(path) and e["error"] for e in errors)
    return docs, errors


# --- WARC / WET ---

URIS = [f"https://fuzz.example/{i}" for i in range(4)]


def warc_members(fmt: str) -> list[bytes]:
    """Valid gzip members, one record each: warcinfo-less pages as Common Crawl writes them."""
    if fmt == "wet":
        return [gzip.compress(wf.warc_record("conversion", u, f"text of {u}\nsecond line".encode()), mtime=0)
                for u in URIS]
    return [wf.response(u, wf.html_page(wf.PROSE[:2], title=u).encode()) for u in URIS]


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=300)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 400)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.none()),
)


def mutate(data: bytes, mutations) -> bytes:
    for op, at, arg in mutations:
        at = at % (len(data) + 1)
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ arg]) + data[at + 1:]
        elif op == "insert":
            data = data[:at] + arg + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + arg:]
        elif op == "truncate":
            data = data[:at]
    return data


@FUZZ
@given(data=st.binary(max_size=3000), fmt=st.sampled_from(["warc", "wet"]),
       name=st.sampled_from(["x.warc.gz", "x.warc"]))
def test_warc_arbitrary_bytes(tmp_path, data, fmt, name):
    path = tmp_path / name
    path.write_bytes(data)
    read_checked(fmt, path)


@FUZZ
@given(fmt=st.sampled_from(["warc", "wet"]), gzipped=st.booleans(),
       mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_warc_mutated(tmp_path, fmt, gzipped, mutations):
    members = warc_members(fmt)
    data = b"".join(members if gzipped else [gzip.decompress(m) for m in members])
    path = tmp_path / ("x.warc.gz" if gzipped else "x.warc")
    path.write_bytes(mutate(data, mutations))
    docs, errors = read_checked(fmt, path)
    assert len(docs) <= len(URIS)


@FUZZ
@given(fmt=st.sampled_from(["warc", "wet"]), at=st.integers(0, len(URIS)),
       junk=st.binary(min_size=1, max_size=400).filter(lambda j: b"WARC/" not in j and j.strip(b"\r\n")))
def test_warc_gz_junk_between_members_is_one_error(tmp_path, fmt, at, junk):
    """Row 7: junk between two members costs one error row and no record."""
    members = warc_members(fmt)
    path = tmp_path / "x.warc.gz"
    path.write_bytes(b"".join(members[:at]) + junk + b"".join(members[at:]))
    docs, errors = read_checked(fmt, path)
    assert [d["url"] for d in docs] == URIS
    assert len(errors) == 1 and errors[0]["input_offset"] == len(b"".join(members[:at]))


@FUZZ
@given(at=st.integers(0, len(URIS)),
       junk=st.binary(min_size=1, max_size=400).filter(lambda j: b"WARC/" not in j and j[:1] not in (b"\r", b"\n")),
       inside=st.booleans())
def test_warc_junk_in_member_or_plain_file_is_one_error(tmp_path, at, junk, inside):
    """Row 7, the other layouts: junk inside a member after its record, and junk between plain records
    (that does not start with a line break: that would be one more blank line between records)."""
    records = [gzip.decompress(m) for m in warc_members("warc")]
    if inside:  # the junk is in the gzip member of record `at - 1` (or, at 0, a member of its own)
        members = [gzip.compress(r, mtime=0) for r in records]
        damaged = gzip.compress((records[at - 1] if at else b"") + junk, mtime=0)
        data = b"".join(members[:max(at - 1, 0)]) + damaged + b"".join(members[at:])
        expect_at = len(b"".join(members[:max(at - 1, 0)]))
        path = tmp_path / "x.warc.gz"
    else:
        data = b"".join(records[:at]) + junk + b"".join(records[at:])
        expect_at = len(b"".join(records[:at]))
        path = tmp_path / "x.warc"
    path.write_bytes(data)
    docs, errors = read_checked("warc", path)
    assert [d["url"] for d in docs] == URIS
    assert len(errors) == 1 and errors[0]["input_offset"] == expect_at


# --- JSONL ---

SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                   st.text(max_size=30), st.text(string.printable, max_size=300))
JSON_VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=8)
RECORD = st.fixed_dictionaries({}, optional={"id": JSON_VALUE, "text": JSON_VALUE, "url": JSON_VALUE,
                                             "date": JSON_VALUE, "lang": JSON_VALUE})
LINE = st.one_of(
    RECORD.map(lambda r: json.dumps(r).encode()),
    RECORD.map(lambda r: json.dumps(r, ensure_ascii=False).encode()),
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")),
    st.sampled_from([b"", b"   ", b"[1, 2]", b'"text"', b"{", b'{"text": "\\ud800"}', b'{"text": "a\\u0000b"}',
                     b'{"text": ' + b"9" * 5000 + b"}", b"[" * 5000, b'{"text": "x", "id": NaN}']),
)


def jsonl_bytes(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


@FUZZ
@given(lines=st.lists(LINE, max_size=12), codec=st.sampled_from(["", ".gz", ".zst"]))
def test_jsonl_every_line_is_read_or_an_error(tmp_path, lines, codec):
    """Read = kept + errors: each line that is not blank is a document or one error row."""
    raw = jsonl_bytes(lines)
    path = tmp_path / f"x.jsonl{codec}"
    path.write_bytes({"": raw, ".gz": gzip.compress(raw), ".zst": zstandard.ZstdCompressor().compress(raw)}[codec])
    docs, errors = read_checked("jsonl", path, max_record_bytes=200)
    assert len(docs) + len(errors) == sum(1 for line in raw.split(b"\n") if line.strip())
    assert [d["input_offset"] for d in docs] == sorted(d["input_offset"] for d in docs)


@FUZZ
@given(lines=st.lists(LINE, min_size=1, max_size=8), codec=st.sampled_from(["", ".gz"]),
       mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_jsonl_mutated(tmp_path, lines, codec, mutations):
    raw = jsonl_bytes(lines)
    data = gzip.compress(raw) if codec else raw
    path = tmp_path / f"x.jsonl{codec}"
    path.write_bytes(mutate(data, mutations))
    read_checked("jsonl", path, max_record_bytes=200)


# --- Parquet ---

COLUMN = st.sampled_from([
    pa.array(["a", "b", None]), pa.array([1, 2, None], pa.int64()), pa.array([1.5, None, -0.0]),
    pa.array([True, False, None]), pa.array([b"x", b"\xff\xfe", None], pa.binary()),
    pa.array([{"k": 1}, None, {"k": 3}]), pa.array([[1], [], None]), pa.array([None, None, None], pa.null()),
    pa.array(["x" * 300, "é" * 150, "fine"]), pa.array(["\ud800".encode("utf-8", "surrogatepass"), b"ok", None],
                                                       pa.binary()),
])


@FUZZ
@given(columns=st.dictionaries(st.sampled_from(["id", "text", "url", "date", "extra"]), COLUMN, min_size=1),
       row_group_size=st.integers(1, 3))
def test_parquet_every_row_is_read_or_an_error(tmp_path, columns, row_group_size):
    """Read = kept + errors, whatever the column types."""
    columns.setdefault("text", pa.array(["one", "two", "three"]))
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    docs, errors = read_checked("parquet", path, max_record_bytes=200)
    assert len(docs) + len(errors) == 3


@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_parquet_mutated(tmp_path, mutations):
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(50)], "text": [f"row {i} " * 5 for i in range(50)],
                             "score": [float(i) for i in range(50)]}), buf, row_group_size=10, compression="none")
    path = tmp_path / "x.parquet"
    path.write_bytes(mutate(buf.getvalue(), mutations))
    docs, errors = read_checked("parquet", path)
    assert len(docs) <= 50


# --- the config loader ---

CONFIG_KEYS = ["release", "output", "runner", "sources", "stages", "kind", "workers", "name", "paths", "format",
               "extract", "filter", "dedup", "max_record_bytes", "resources", "options", "runtime_env"]
YAML_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(allow_nan=True),
                        st.text(string.ascii_letters + "${}:-*./ ", max_size=20), st.sampled_from(CONFIG_KEYS))
YAML_KEY = st.sampled_from(CONFIG_KEYS) | st.text(max_size=6)
YAML_VALUE = st.recursive(YAML_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(YAML_KEY, inner, max_size=4)), max_leaves=12)
BASE_CONFIG = {"release": "r", "output": "out", "runner": {"kind": "local", "workers": 1},
               "sources": [{"name": "s", "paths": ["in.jsonl"], "format": "jsonl"}], "stages": {"filter": {}}}


def edited_config(edits) -> str:
    """The base config (valid) with some values replaced, deep or shallow."""
    config = json.loads(json.dumps(BASE_CONFIG))
    for where, key, value in edits:
        node = config
        if where == "source":
            node = (config.get("sources") or [None])[0] if isinstance(config.get("sources"), list) else None
        elif where != "top":
            node = config.get(where)
        if not isinstance(node, dict):  # an earlier edit replaced it
            continue
        if value == "<delete>":
            node.pop(key, None)
        else:
            node[key] = value
    return json.dumps(config)


CONFIG_EDIT = st.tuples(st.sampled_from(["top", "runner", "source", "stages"]), YAML_KEY,
                        YAML_VALUE | st.just("<delete>"))
YAML_TEXT = st.one_of(
    st.lists(CONFIG_EDIT, max_size=3).map(edited_config),
    st.text(max_size=300),
    st.text(string.printable, max_size=300),
    st.dictionaries(st.sampled_from(CONFIG_KEYS), YAML_VALUE, max_size=5).map(lambda d: json.dumps(d)),
    st.sampled_from(["a: &x [*x]", "!!python/object:os.system {}", "a: !!binary zz", "- - - -", "{a: 1, a: 2}",
                     "a: " + "[" * 200, "%YAML 9.9\n---\na: 1", "\x00", "a: *nope", "? [a]\n: b"]),
)


@FUZZ
@given(text=YAML_TEXT)
def test_config_loader_raises_only_config_errors(tmp_path, monkeypatch, text):
    """Whatever the YAML, the loader answers with a ConfigError (file, key, reason), never a traceback."""
    from pipelines.config import load_config
    from pipelines.errors import ConfigError

    monkeypatch.chdir(tmp_path)  # relative source globs look here, not at the repository
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    path = tmp_path / "release.yaml"
    path.write_text(text, encoding="utf-8")
    with time_limit(READ_SECONDS):
        try:
            load_config(str(path))
        except ConfigError:
            pass


@pytest.fixture(autouse=True)
def _no_stray_alarm():
    yield
    assert signal.alarm(0) == 0
