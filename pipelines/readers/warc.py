"""WARC / WET reader on fastwarc, with resynchronisation after corrupt data.

Common Crawl files hold one gzip member per record. When fastwarc hits garbage or a broken
member, the bytes up to the next member that decompresses to a WARC header are reported as one
error row, and reading resumes there: the records after the damage are not lost.
"""

import zlib
from collections.abc import Iterator

import fsspec
from fastwarc import ArchiveIterator

from pipelines.documents import error

GZIP_MAGIC = b"\x1f\x8b\x08"
PLAIN_MAGIC = b"WARC/1."
SCAN_CHUNK = 1 << 20


def read_warc(source, path: str, errors: list[dict], record_type: str, max_payload_bytes: int) -> Iterator[dict]:
    with fsspec.open(path, "rb", **source.storage_options) as fh:
        gzipped = fh.read(3) == GZIP_MAGIC
        fh.seek(0, 2)
        size = fh.tell()
        start, found_any = 0, False
        while start is not None and start < size:
            fh.seek(start)
            last = None
            try:
                for rec in ArchiveIterator(fh, parse_http=False):
                    last = rec.stream_pos
                    found_any = True
                    out = _record(rec, source, path, errors, record_type, max_payload_bytes)
                    if out is not None:
                        yield out
                break  # clean end of file
            except OSError as exc:
                bad_from = start if last is None else _member_end(fh, last, gzipped)
                resume = _next_record_start(fh, max(bad_from, (last or start)) + 1, gzipped, size)
                what = "no WARC record found" if not found_any and resume is None else "corrupt data"
                end = size if resume is None else resume
                errors.append(error("read", source.name, path, bad_from, "CorruptWarc",
                                    f"{what} in bytes {bad_from}..{end} skipped ({exc})"))
                start = resume


def _record(rec, source, path: str, errors: list[dict], wanted: str, limit: int) -> dict | None:
    rtype = str(rec.record_type)
    if rtype in ("unknown", "no_type"):
        errors.append(error("read", source.name, path, rec.stream_pos, "CorruptWarc",
                            "record header could not be parsed (truncated or damaged record)"))
        return None
    if rtype != wanted:
        return None
    declared = int(rec.headers.get("Content-Length") or 0)
    block = rec.reader.read(limit + 64 * 1024)  # room for HTTP headers; bigger payloads are rejected
    record_id = (rec.record_id or "").strip("<>").removeprefix("urn:uuid:").removeprefix("urn:")
    url = rec.headers.get("WARC-Target-URI")
    if len(block) < declared and len(block) < limit:
        errors.append(error("read", source.name, path, rec.stream_pos, "TruncatedRecord",
                            f"record declares {declared} bytes, only {len(block)} present", record_id))
        return None
    doc = {
        "id": record_id or f"{source.name}/{path}#{rec.stream_pos}",
        "url": url,
        "source": source.name,
        "input_file": path,
        "input_offset": rec.stream_pos,
        "date": rec.headers.get("WARC-Date"),
        "metadata": None,
    }
    if wanted == "conversion":  # WET: the block is the extracted text
        doc["text"] = block.decode("utf-8", errors="replace")
        return doc
    head, sep, body = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = block.partition(b"\n\n")
    status, headers = _parse_http_head(head)
    doc.update(text=None, payload=body, payload_size=declared - len(head) - len(sep),
               http_status=status, http_content_type=headers.get("content-type"))
    return doc


def _parse_http_head(head: bytes) -> tuple[int | None, dict[str, str]]:
    lines = head.decode("latin-1").splitlines()
    status = None
    if lines and lines[0].startswith("HTTP/"):
        parts = lines[0].split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return status, headers


def _member_end(fh, start: int, gzipped: bool) -> int:
    """End offset of the gzip member starting at `start` (for plain WARC: start itself)."""
    if not gzipped:
        return start
    fh.seek(start)
    d = zlib.decompressobj(31)
    consumed = 0
    while not d.eof:
        chunk = fh.read(SCAN_CHUNK)
        if not chunk:
            break
        try:
            d.decompress(chunk)
        except zlib.error:
            break
        consumed += len(chunk)
    return start + consumed - len(d.unused_data)


def _looks_like_record(fh, pos: int, gzipped: bool) -> bool:
    fh.seek(pos)
    raw = fh.read(64 * 1024)
    if gzipped:
        try:
            raw = zlib.decompressobj(31).decompress(raw, 16)
        except zlib.error:
            return False
    return raw.startswith(PLAIN_MAGIC)


def _next_record_start(fh, pos: int, gzipped: bool, size: int) -> int | None:
    magic = GZIP_MAGIC if gzipped else PLAIN_MAGIC
    while pos < size:
        fh.seek(pos)
        chunk = fh.read(SCAN_CHUNK + len(magic))
        i = chunk.find(magic)
        while i != -1:
            if _looks_like_record(fh, pos + i, gzipped):
                return pos + i
            i = chunk.find(magic, i + 1)
        pos += SCAN_CHUNK
    return None
