"""Readers for sources that are already text: JSONL (.gz/.zst/plain) and Parquet.

Fields other than id/text/url/date are kept as JSON in the `metadata` column.
A line that is not UTF-8 or not JSON becomes an error row; the rest of the file is still read.
"""

import io
import json
from collections.abc import Iterator

import fsspec
import pyarrow.parquet as pq

from pipelines.documents import encodable, error

KNOWN = {"date"}


def _doc(source, path: str, offset: int, record: dict, errors: list[dict]) -> dict | None:
    text = record.get(source.text_field)
    if not isinstance(text, str):
        kind = "MissingField" if text is None else "WrongType"
        errors.append(error("read", source.name, path, offset, kind,
                            f"field {source.text_field!r} is {'missing' if text is None else type(text).__name__}"))
        return None
    url = record.get(source.url_field) if source.url_field else None
    for name, value in (("text", text), ("url", url)):
        if isinstance(value, str) and not encodable(value):  # JSON "\ud800" escapes: Parquet cannot hold them
            errors.append(error("read", source.name, path, offset, "InvalidUnicode",
                                f"field {name!r} has a lone surrogate (not encodable as UTF-8)"))
            return None
    raw_id = record.get(source.id_field) if source.id_field else None
    used = {source.text_field, source.id_field, source.url_field, *KNOWN}
    extra = {k: v for k, v in record.items() if k not in used}
    return {
        "id": str(raw_id) if raw_id is not None else f"{source.name}/{path}#{offset}",
        "text": text,
        "url": url,
        "source": source.name,
        "input_file": path,
        "input_offset": offset,
        "date": None if record.get("date") is None else str(record.get("date")),
        "metadata": json.dumps(extra, sort_keys=True, default=str, ensure_ascii=False) if extra else None,
    }


def read_jsonl(source, path: str, errors: list[dict]) -> Iterator[dict]:
    try:
        with fsspec.open(path, "rb", compression="infer", **source.storage_options) as fh:
            # zstd's reader does not iterate lines; a buffered wrapper does, for every codec
            for line_no, raw in enumerate(io.BufferedReader(fh)):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    errors.append(error("read", source.name, path, line_no, "InvalidUtf8", f"line {line_no}: {exc}"))
                    continue
                except json.JSONDecodeError as exc:
                    errors.append(error("read", source.name, path, line_no, "InvalidJson", f"line {line_no}: {exc}"))
                    continue
                if not isinstance(record, dict):
                    errors.append(error("read", source.name, path, line_no, "WrongType",
                                        f"line {line_no}: expected a JSON object"))
                    continue
                doc = _doc(source, path, line_no, record, errors)
                if doc is not None:
                    yield doc
    except (OSError, EOFError) as exc:  # truncated .gz / .zst: keep what was read, report the rest
        errors.append(error("read", source.name, path, None, type(exc).__name__,
                            f"file unreadable past this point: {exc}"))


def read_parquet(source, path: str, errors: list[dict]) -> Iterator[dict]:
    try:
        pf = pq.ParquetFile(fsspec.open(path, "rb", **source.storage_options).open())
    except Exception as exc:  # not a parquet file at all
        errors.append(error("read", source.name, path, None, type(exc).__name__, f"not readable as Parquet: {exc}"))
        return
    if source.text_field not in pf.schema_arrow.names:
        errors.append(error("read", source.name, path, None, "MissingField",
                            f"column {source.text_field!r} not in {pf.schema_arrow.names}"))
        return
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            doc = _doc(source, path, row, record, errors)
            if doc is not None:
                yield doc
            row += 1
