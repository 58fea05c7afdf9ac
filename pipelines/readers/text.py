"""Readers for sources that are already text: JSONL (.gz/.zst/plain) and Parquet.

Fields other than id/text/url/date are kept as JSON in the `metadata` column. The id, text, url and
date fields become strings: numbers and booleans are written out (`5` -> "5"), while a list or an
object there makes the record an error row (`WrongType`, naming the field), as does a line that is not
UTF-8 or not JSON, and a line (or a Parquet text) longer than the source's `max_record_bytes`
(`TooLarge`; the line is skipped in pieces, never held in memory). The rest of the file is still read.
"""

import datetime
import decimal
import io
import json
from collections.abc import Iterator

import fsspec
import pyarrow.parquet as pq

from pipelines.documents import encodable, error

KNOWN = {"date"}
SKIP_CHUNK = 1 << 20  # an over-long line is read past in pieces of this size
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024


class _BadField(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _as_str(name: str, value) -> str | None:
    """A field's value as the string its column holds (None stays None)."""
    if type(value) is str and value.isascii():  # the common case, first
        return value
    if value is None or isinstance(value, str):
        pass
    elif isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float | decimal.Decimal | datetime.date | datetime.time | datetime.timedelta):
        value = str(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _BadField("InvalidUtf8", f"field {name!r} holds bytes that are not UTF-8") from None
    else:
        raise _BadField("WrongType", f"field {name!r} is {type(value).__name__}, not a string")
    if value is not None and not encodable(value):  # JSON "\ud800" escapes: Parquet cannot hold them
        raise _BadField("InvalidUnicode", f"field {name!r} has a lone surrogate (not encodable as UTF-8)")
    return value


def _doc(source, path: str, offset: int, record: dict, errors: list[dict]) -> dict | None:
    text = record.get(source.text_field)
    if text is None:
        errors.append(error("read", source.name, path, offset, "MissingField",
                            f"field {source.text_field!r} is missing"))
        return None
    try:
        text = _as_str(source.text_field, text)
        url = _as_str(source.url_field, record.get(source.url_field)) if source.url_field else None
        raw_id = _as_str(source.id_field, record.get(source.id_field)) if source.id_field else None
        date = _as_str("date", record.get("date"))
    except _BadField as exc:
        errors.append(error("read", source.name, path, offset, exc.kind, str(exc)))
        return None
    limit = source.max_record_bytes
    if len(text) > limit or len(text) * 4 > limit and len(text.encode("utf-8")) > limit:
        errors.append(error("read", source.name, path, offset, "TooLarge",
                            f"field {source.text_field!r} is longer than max_record_bytes ({limit} bytes)"))
        return None
    used = {source.text_field, source.id_field, source.url_field, *KNOWN}
    extra = {k: v for k, v in record.items() if k not in used}
    metadata = None
    if extra:
        metadata = json.dumps(extra, sort_keys=True, default=str, ensure_ascii=False)
        if not metadata.isascii() and not encodable(metadata):  # lone surrogates: keep them as JSON escapes
            metadata = json.dumps(extra, sort_keys=True, default=str)
    return {
        "id": raw_id or f"{source.name}/{path}#{offset}",  # an empty id would be shared by many documents
        "text": text,
        "url": url,
        "source": source.name,
        "input_file": path,
        "input_offset": offset,
        "date": date,
        "metadata": metadata,
    }


def _lines(fh, limit: int) -> Iterator[bytes | int]:
    """The lines of a binary stream; a line longer than `limit` bytes (without its newline) is read past
    in pieces and given as its length instead."""
    reader = io.BufferedReader(fh)  # zstd's reader does not read lines; a buffered wrapper does, for every codec
    while raw := reader.readline(limit + 1):
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw
            continue
        size = len(raw)
        while not raw.endswith(b"\n") and (raw := reader.readline(SKIP_CHUNK)):
            size += len(raw)
        yield size - raw.endswith(b"\n")  # the line's length, without its newline


def read_jsonl(source, path: str, errors: list[dict]) -> Iterator[dict]:
    limit = source.max_record_bytes
    line_no = -1
    try:
        with fsspec.open(path, "rb", compression="infer", **source.storage_options) as fh:
            lines = _lines(fh, limit)
            while True:
                try:
                    raw = next(lines, None)
                except Exception as exc:  # noqa: BLE001 - truncated or corrupt .gz / .zst: keep what was read
                    errors.append(error("read", source.name, path, None, type(exc).__name__,
                                        f"file unreadable past line {line_no}: {exc}"))
                    break
                if raw is None:
                    if path.endswith(".zst") and (end := _zstd_cut_at(path, source.storage_options)) is not None:
                        errors.append(error("read", source.name, path, None, "TruncatedFile",
                                            f"the .zst data ends inside a frame (at byte {end}): lines after "
                                            f"line {line_no} are lost"))
                    break
                line_no += 1
                if isinstance(raw, int):
                    errors.append(error("read", source.name, path, line_no, "TooLarge",
                                        f"line {line_no}: {raw} bytes, over max_record_bytes ({limit})"))
                    continue
                doc = _parse_line(source, path, line_no, raw, errors)
                if doc is not None:
                    yield doc
    except OSError as exc:  # the file cannot be opened
        errors.append(error("read", source.name, path, None, type(exc).__name__, f"file unreadable: {exc}"))


ZSTD_MAGIC, SKIPPABLE = 0xFD2FB528, range(0x184D2A50, 0x184D2A60)


def _zstd_cut_at(path: str, storage_options: dict) -> int | None:
    """Where a .zst file ends inside a frame, or None when every frame is complete. zstandard's stream
    reader ends a cut frame quietly, so the frames are walked here: block headers only, no decoding."""
    with fsspec.open(path, "rb", **storage_options) as fh:
        size = fh.seek(0, 2)

        def read(pos: int, n: int) -> bytes:
            fh.seek(pos)
            return fh.read(n)

        pos = 0
        while pos < size:
            head = read(pos, 6)
            if len(head) < 6:
                return pos
            magic = int.from_bytes(head[:4], "little")
            if magic in SKIPPABLE:
                pos += 8 + int.from_bytes(read(pos + 4, 4), "little")
                continue
            if magic != ZSTD_MAGIC:
                return None  # not zstd data: the decoder has reported it already
            flags = head[4]
            single = flags >> 5 & 1
            content_size = (1 if single else 0, 2, 4, 8)[flags >> 6]
            pos += 5 + (not single) + (0, 1, 2, 4)[flags & 3] + content_size
            while True:  # blocks: a 3-byte header (last flag, type, size), then the block
                block = read(pos, 3)
                if len(block) < 3:
                    return pos
                header = int.from_bytes(block, "little")
                pos += 3 + (1 if header >> 1 & 3 == 1 else header >> 3)  # an RLE block holds one byte
                if header & 1:
                    break
            pos += 4 * (flags >> 2 & 1)  # the content checksum
        return pos if pos > size else None


def _parse_line(source, path: str, line_no: int, raw: bytes, errors: list[dict]) -> dict | None:
    if not raw.strip():
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        errors.append(error("read", source.name, path, line_no, "InvalidUtf8", f"line {line_no}: {exc}"))
        return None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long integers, too deep nesting
        errors.append(error("read", source.name, path, line_no, "InvalidJson",
                            f"line {line_no}: {type(exc).__name__}: {exc}"))
        return None
    if not isinstance(record, dict):
        errors.append(error("read", source.name, path, line_no, "WrongType", f"line {line_no}: expected a JSON object"))
        return None
    return _doc(source, path, line_no, record, errors)


def read_parquet(source, path: str, errors: list[dict]) -> Iterator[dict]:
    try:
        with fsspec.open(path, "rb", **source.storage_options) as fh:
            yield from _read_parquet(source, path, fh, errors)
    except OSError as exc:  # the file cannot be opened
        errors.append(error("read", source.name, path, None, type(exc).__name__, f"file unreadable: {exc}"))


def _read_parquet(source, path: str, fh, errors: list[dict]) -> Iterator[dict]:
    try:
        pf = pq.ParquetFile(fh)
        names = pf.schema_arrow.names
        groups = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    except Exception as exc:  # noqa: BLE001 - not a parquet file at all
        errors.append(error("read", source.name, path, None, type(exc).__name__, f"not readable as Parquet: {exc}"))
        return
    if source.text_field not in names:
        errors.append(error("read", source.name, path, None, "MissingField",
                            f"column {source.text_field!r} not in {names}"))
        return
    first = 0  # the row number of the row group's first row
    for group, n_rows in enumerate(groups):
        row = first
        batches = pf.iter_batches(batch_size=4096, row_groups=[group])
        while True:
            try:
                batch = next(batches, None)
                records = None if batch is None else batch.to_pylist()
            except Exception as exc:  # noqa: BLE001 - a damaged row group: report its rows, read the next one
                errors.append(error("read", source.name, path, row, type(exc).__name__,
                                    f"rows {row}..{first + n_rows - 1} (row group {group}) unreadable: {exc}"))
                break
            if records is None:
                break
            for record in records:
                doc = _doc(source, path, row, record, errors)
                if doc is not None:
                    yield doc
                row += 1
        first += n_rows
