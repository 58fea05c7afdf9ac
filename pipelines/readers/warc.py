"""WARC / WET reader on fastwarc, with resynchronisation after corrupt data.

Common Crawl files hold one gzip member per record. When fastwarc hits garbage or a broken
member (or stops early without saying so), the bytes from the end of the last good record (its
gzip member, or its declared length in a plain WARC) up to the next record start (a member that
decompresses to a WARC header, or `WARC/1.`) are one error row, and reading resumes there: the
records after the damage are not lost. Junk inside a record's member, after the record, is one
error row too. A record whose member is broken, or (plain WARC) whose block runs into the next
record, is part of the damage, not a document.

Decompression outside fastwarc is bounded: a member is inflated in 1 MiB pieces, and past the WARC
records it holds by at most `max_payload_bytes` (+64 KiB). A member that holds more than that after
its record (a gzip bomb behind a small Content-Length) makes the record a `too_large` one: its document
gets that size as `payload_size`, and the extract stage rejects it without parsing (WET: an error row).
"""

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import fsspec
from fastwarc import ArchiveIterator

from pipelines.documents import error

GZIP_MAGIC = b"\x1f\x8b\x08"
PLAIN_MAGIC = b"WARC/1."
SCAN_CHUNK = 1 << 20
HEAD_ROOM = 64 * 1024  # room for the HTTP headers in front of a payload
MAX_HEADER = 64 * 1024  # fastwarc's WARC header limit is 32 KiB
BLANK_LINES = re.compile(rb"(?:\r?\n)*")  # between records
CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d{1,18})[ \t]*\r?$")


@dataclass
class _Warc:
    """The file being read, and what reading it needs."""

    fh: BinaryIO
    size: int
    gzipped: bool
    source: Any  # its SourceConfig
    path: str
    errors: list[dict]
    record_type: str  # the records read: "response" (WARC) or "conversion" (WET)
    limit: int  # max_payload_bytes


@dataclass
class _Last:
    """The last record fastwarc read in a run."""

    pos: int
    wanted: bool
    doc: dict | None = None  # its document, held back until we know whether the record is kept
    reported: bool = False  # it has an error row already (e.g. a truncated block)


@dataclass
class _Run:
    """fastwarc reading from `start` until it ends or fails, and what that left to decide."""

    start: int
    last: _Last | None = None
    failure: Exception | None = None  # what stopped fastwarc (None: it stopped without saying why)
    good_end: int = 0  # where the good data ends: after the last record (and its gzip member), or where damage starts
    junk: int | None = None  # bytes of corrupt data in the last record's gzip member, after the record

    @property
    def after_record(self) -> bool:
        """Whether the good data ends after a record (not at a broken one, or where the run began)."""
        return self.last is not None and self.good_end > self.last.pos

    @property
    def why(self) -> str:
        """Why fastwarc stopped, for error messages."""
        return f"{type(self.failure).__name__}: {self.failure}" if self.failure is not None else "reader stopped early"


def read_warc(source, path: str, errors: list[dict], record_type: str, max_payload_bytes: int) -> Iterator[dict]:
    """Yields the `record_type` records of a WARC (or WET) file as documents; damaged data becomes error rows."""
    with fsspec.open(path, "rb", **source.storage_options) as fh:
        fh.seek(0, 2)
        size = fh.tell()
        warc = _Warc(fh, size, _is_gzipped(fh, size), source, path, errors, record_type, max_payload_bytes)
        start, found_any = 0, False
        while start is not None and start < size:  # one run per stretch of readable records
            run = _Run(start)
            yield from _read_run(warc, run)  # its documents, but the last one's
            found_any = found_any or run.last is not None
            _end_run(warc, run)  # decides that one
            if run.last is not None and run.last.doc is not None:
                yield run.last.doc
            if _clean_end(warc, run):
                break
            resume = _resume_at(warc, run)
            _report_skipped(warc, run, resume, found_any)
            start = resume


def _read_run(warc: _Warc, run: _Run) -> Iterator[dict]:
    """Yields the documents fastwarc reads from `run.start` on, but the last one: it stays in `run.last`."""
    warc.fh.seek(run.start)
    records = iter(ArchiveIterator(warc.fh, parse_http=False))
    while True:
        try:
            rec = next(records)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - fastwarc raises OSError mostly; any failure is corrupt data
            run.failure = exc
            return
        if run.last is not None and run.last.doc is not None:
            yield run.last.doc
        run.last = last = _Last(rec.stream_pos, str(rec.record_type) == warc.record_type)
        n_errors = len(warc.errors)
        try:
            last.doc = _record(rec, warc.source, warc.path, warc.errors, warc.record_type, warc.limit)
            last.reported = len(warc.errors) > n_errors
        except Exception as exc:  # noqa: BLE001 - a block fastwarc cannot read
            run.failure = exc
            return


def _end_run(warc: _Warc, run: _Run) -> None:
    """Where the good data of the run ends, and whether its last record is kept (or too large)."""
    last = run.last
    if last is None:
        run.good_end = run.start  # fastwarc read nothing
        return
    end, junk = _record_end(warc.fh, last.pos, warc.gzipped, warc.size, warc.limit)
    if end is None:  # not at a member start (several records in one member): trust fastwarc
        run.good_end = warc.size if run.failure is None else last.pos  # (the damage is somewhere after it)
        return
    run.good_end, run.junk = end, junk
    if not _keeps_last(warc, run):
        run.good_end, last.doc = last.pos, None  # what fastwarc made of it is part of the damage
    if junk is not None and junk > warc.limit and last.wanted:  # a gzip bomb behind a small Content-Length
        _too_large(warc, last, junk)
        run.junk = None


def _keeps_last(warc: _Warc, run: _Run) -> bool:
    """Whether the run's last record is kept, `run.good_end` being where it ends."""
    if _clean_end(warc, run):
        return True
    if run.good_end == run.last.pos:  # its gzip member (or its header) is broken
        return False
    # a plain record whose block runs into the next record: bytes of it were lost
    return warc.gzipped or not _next_record_start(warc.fh, run.last.pos + 1, False, run.good_end)


def _clean_end(warc: _Warc, run: _Run) -> bool:
    """Whether the run read to the end of the file with no damage."""
    return run.failure is None and run.junk is None and run.good_end >= warc.size


def _resume_at(warc: _Warc, run: _Run) -> int | None:
    """Where to resume after the run: the next record start (None: there is none)."""
    # at `good_end` itself if that is after a record; past it if a broken record (or the run) starts there
    resume = _next_record_start(warc.fh, run.good_end if run.after_record else run.good_end + 1, warc.gzipped,
                                warc.size)
    if resume is not None and resume <= run.start:  # fastwarc's offsets are absolute, but never loop
        resume = _next_record_start(warc.fh, run.start + 1, warc.gzipped, warc.size)
    return resume


def _report_skipped(warc: _Warc, run: _Run, resume: int | None, found_any: bool) -> None:
    """The error row for the bytes skipped from the end of the good data to `resume` (none if none were)."""
    last, good_end = run.last, run.good_end
    end = warc.size if resume is None else resume
    if run.junk is not None:  # damage inside the last record's gzip member, and maybe after it
        skipped = f" and bytes {good_end}..{end}" if end > good_end else ""
        warc.errors.append(error("read", warc.source.name, warc.path, last.pos, "CorruptWarc",
                                 f"{run.junk} bytes of corrupt data after the record in its gzip member{skipped} "
                                 f"skipped ({run.why})"))
        return
    if not (end > good_end or not run.after_record or run.failure is not None and resume is None):
        return  # nothing skipped: the next record starts where the good data ends
    where = f"in bytes {good_end}..{end}" if end > good_end else "at the end of the file"
    if last is not None and last.reported and good_end == last.pos:  # a cut record: its row says more, add to it
        message = f"{warc.errors[-1]['message']}; data {where} skipped ({run.why})"
        warc.errors[-1] = {**warc.errors[-1], "message": message[:2000]}
    else:
        what = "no WARC record found" if not found_any and resume is None else "corrupt data"
        warc.errors.append(error("read", warc.source.name, warc.path, good_end if end > good_end else last.pos,
                                 "CorruptWarc", f"{what} {where} skipped ({run.why})"))


def _record(rec, source, path: str, errors: list[dict], wanted: str, limit: int) -> dict | None:
    rtype = str(rec.record_type)
    if rtype in ("unknown", "no_type"):
        errors.append(error("read", source.name, path, rec.stream_pos, "CorruptWarc",
                            "record header could not be parsed (truncated or damaged record)"))
        return None
    if rtype != wanted:
        return None
    declared = _declared_length(rec)
    block = rec.reader.read(limit + HEAD_ROOM)  # room for HTTP headers; bigger payloads are rejected
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


def _declared_length(rec) -> int:
    """The record's Content-Length header (fastwarc's own value differs for some damaged headers)."""
    value = (rec.headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else max(int(rec.content_length or 0), 0)


def _too_large(warc: _Warc, last: _Last, junk: int) -> None:
    """The record's gzip member holds `junk` bytes past its declared block: the record is too large."""
    doc = last.doc
    if doc is None:
        return
    if "payload_size" in doc:  # HTML: extract rejects it as `too_large` without parsing it
        doc["payload_size"] = max(doc["payload_size"], 0) + junk
        return
    warc.errors.append(error("read", warc.source.name, warc.path, last.pos, "TooLarge",
                             f"the record's gzip member holds {junk} more bytes than the record declares", doc["id"]))
    last.doc = None


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


def _is_gzipped(fh, size: int) -> bool:
    """Gzip or plain WARC: by the first record found (junk may come first)."""
    fh.seek(0)
    head = fh.read(len(PLAIN_MAGIC))
    if head.startswith(GZIP_MAGIC) and _looks_like_record(fh, 0, True):
        return True
    if head == PLAIN_MAGIC:
        return False
    first_gz = _next_record_start(fh, 0, True, size)
    first_plain = _next_record_start(fh, 0, False, size)
    if first_gz is None and first_plain is None:
        return head.startswith(GZIP_MAGIC)
    return first_plain is None or first_gz is not None and first_gz < first_plain


def _record_end(fh, pos: int, gzipped: bool, size: int, limit: int) -> tuple[int | None, int | None]:
    """Where the record at `pos` ends (for gzip: its member), past blank lines, and how many bytes of
    something else than records its member holds (None: none). The end is None for a gzip record that
    does not start a member; it is `pos` itself for a member or a header that is broken."""
    if not gzipped:
        fh.seek(pos)
        head = fh.read(MAX_HEADER)
        length = _record_length(head)
        return (pos if length is None else _skip_blank(fh, pos + length, size)), None
    fh.seek(pos)
    if fh.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
        return None, None
    end, junk = _inflate_member(fh, pos, limit + HEAD_ROOM)
    if end is None:
        return pos, None
    if junk is not None and junk > limit + HEAD_ROOM:  # inflating stopped inside the member: skip the rest of it
        end = _next_record_start(fh, end, True, size) or size
    return end, junk


def _record_length(head: bytes) -> int | None:
    """The length of the WARC record whose header `head` starts with (header, block), or None."""
    sep = b"\r\n\r\n"
    i = head.find(sep)
    if i == -1:
        sep = b"\n\n"
        i = head.find(sep)
    if i == -1:
        return None
    match = CONTENT_LENGTH.search(head[:i])
    return i + len(sep) + (int(match.group(1)) if match else 0)


def _inflate_member(fh, pos: int, cap: int) -> tuple[int | None, int | None]:
    """Inflates the gzip member at `pos` in SCAN_CHUNK pieces, walking over the WARC records it holds.
    Returns the offset where it ends (None: it is broken or cut) and how many of its bytes are not
    records (None: none); inflating stops once those pass `cap`, and the offset is then where it stopped."""
    d = zlib.decompressobj(31)
    fh.seek(pos)
    fed, pending = 0, b""
    inflated = 0
    at = 0  # offset in the inflated member where the next record starts (or the block being skipped ends)
    buf, buf_at = b"", 0  # inflated bytes from offset buf_at on, kept while looking for a record header
    junk_from = None  # offset in the inflated member where data that is not a record starts
    while not d.eof:
        if not pending:
            pending = fh.read(SCAN_CHUNK)
            if not pending:
                return None, None
            fed += len(pending)
        try:
            out = d.decompress(pending, SCAN_CHUNK)
        except zlib.error:
            return None, None
        pending = d.unconsumed_tail
        inflated += len(out)
        if junk_from is None:
            buf += out
            junk_from = _walk_records(buf, buf_at, at, d.eof)
            if isinstance(junk_from, tuple):
                buf, buf_at, at = junk_from
                junk_from = None
        if junk_from is not None and inflated - junk_from > cap:
            stop = pos + fed - len(pending) - (len(d.unused_data) if d.eof else 0)
            return stop, inflated - junk_from
    end = pos + fed - len(d.unused_data)
    return end, (None if junk_from is None else max(inflated - junk_from, 1))


def _walk_records(buf: bytes, buf_at: int, at: int, eof: bool) -> int | tuple[bytes, int, int]:
    """One step of `_inflate_member`'s walk over the inflated bytes `buf` (from offset `buf_at` on):
    returns where data that is not a WARC record starts, or the state to continue with."""
    while True:
        if at > buf_at:  # skip (what is left of) a record's block
            drop = min(at - buf_at, len(buf))
            buf, buf_at = buf[drop:], buf_at + drop
            if at > buf_at:
                return buf, buf_at, at
        blank = BLANK_LINES.match(buf).end()
        buf, buf_at = buf[blank:], buf_at + blank
        at = buf_at
        if not buf or len(buf) < len(PLAIN_MAGIC) and not eof:
            return buf, buf_at, at  # need more
        if not buf.startswith(PLAIN_MAGIC):
            return at
        length = _record_length(buf[:MAX_HEADER])
        if length is None:
            if len(buf) < MAX_HEADER and not eof:
                return buf, buf_at, at
            return at
        at = buf_at + length


def _skip_blank(fh, pos: int, size: int) -> int:
    while pos < size:
        fh.seek(pos)
        chunk = fh.read(SCAN_CHUNK)
        blank = BLANK_LINES.match(chunk).end()
        pos += blank
        if blank < len(chunk) or not chunk:
            break
    return min(pos, size)


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
    """The offset of the first record start in pos..size (for gzip: of a member that inflates to one)."""
    magic = GZIP_MAGIC if gzipped else PLAIN_MAGIC
    while pos < size:
        fh.seek(pos)
        chunk = fh.read(SCAN_CHUNK + len(magic))
        i = chunk.find(magic)
        while i != -1 and pos + i < size:
            if _looks_like_record(fh, pos + i, gzipped):
                return pos + i
            i = chunk.find(magic, i + 1)
        pos += SCAN_CHUNK
    return None
