"""Output I/O through fsspec: atomic writes (temporary name, then rename), Parquet with zstd."""

import hashlib
import io
import json
import os
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def write_bytes_atomic(path: str, data: bytes) -> None:
    fs, p = fsspec.core.url_to_fs(path)
    parent = os.path.dirname(p)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{os.path.basename(p)}"
    with fs.open(tmp, "wb") as fh:
        fh.write(data)
    fs.mv(tmp, p)


def write_json_atomic(path: str, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_table_atomic(path: str, rows: list[dict], schema: pa.Schema) -> int:
    table = pa.Table.from_pylist(rows, schema=schema)
    write_bytes_atomic(path, table_bytes(table))
    return table.num_rows


def read_table(path: str) -> pa.Table:
    with fsspec.open(path, "rb") as fh:
        return pq.read_table(fh)


def read_json(path: str):
    with fsspec.open(path, "rt") as fh:
        return json.load(fh)


def exists(path: str) -> bool:
    fs, p = fsspec.core.url_to_fs(path)
    return fs.exists(p)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with fsspec.open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def remove_temporaries(root: str) -> int:
    """Deletes half-written files left by a killed run (they never hold committed data)."""
    fs, p = fsspec.core.url_to_fs(root)
    if not fs.exists(p):
        return 0
    stale = [f for f in fs.find(p) if os.path.basename(f).startswith(".tmp-")]
    for f in stale:
        fs.rm(f)
    return len(stale)
