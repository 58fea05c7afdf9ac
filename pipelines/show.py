"""`gristmill show OUT`: a seeded sample of a release's documents, with the text a stage saw.

Kept documents of a stage (`--stage`, default the last stage that wrote documents), rejects by
reason (`--reason`, with the text the rejecting stage received: the previous stage's Parquet for
that part, or, for the first stage, the source record read by file and offset), the mixture's
documents of one cluster (`--cluster`), or one document by id (`--id`). The sample is ordered by
md5(seed:id): the same on every run and for any number of workers.

Reads only what it shows: the candidates' ids (one column), then per part file the rows of the
chosen ids (DuckDB pushes the filter into the row groups); a source record is read at its offset
(WARC: a seek to the record; Parquet: its row group; JSONL: the lines up to it).

Everything printed that comes from a document is escaped: control characters (C0 but newline and
tab, DEL, C1), bidirectional overrides, line separators and lone surrogates become visible `\\xNN` /
`\\uNNNN` escapes, so no ANSI sequence in a page can act on the terminal. `--json` writes one
ASCII-only JSON object per line.
"""

import json
import os
import re
from dataclasses import asdict, dataclass

import duckdb
import fsspec
import pyarrow.parquet as pq

from pipelines import io, stats

HEAD_CHARS = 600  # characters shown at each end of a long text
SLACK = 200  # a text at most this much longer than head + tail is shown whole
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                    "\ud800-\udfff]")
UNSAFE_LINE = re.compile(UNSAFE.pattern[:-1] + "\t\n]")  # header fields: one line each


class ShowError(Exception):
    """Bad arguments for this release (an unknown stage, reason, cluster or id): the CLI exits 2."""


@dataclass
class Shown:
    """One document as shown: where it ended, and the text the stage saw."""

    id: str
    url: str | None
    source: str | None
    stage: str
    status: str  # kept | rejected | error
    reason: str | None
    detail: str | None
    duplicate_of: str | None
    input_file: str | None
    input_offset: int | None
    text_from: str  # where `text` was read: "<stage>/part-NNNNN.parquet", or "source record"
    text: str | None


def escape(text: str, one_line: bool = False) -> str:
    """`text` with every character that could act on a terminal written as a visible escape."""
    pattern = UNSAFE_LINE if one_line else UNSAFE
    return pattern.sub(lambda m: _code(m.group()), text)


def _code(char: str) -> str:
    o = ord(char)
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char) or (f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")


def clip(text: str, chars: int | None = HEAD_CHARS) -> tuple[str, int]:
    """(head + marker + tail, characters omitted); the whole text when it is short or `chars` is None."""
    if chars is None or len(text) <= 2 * chars + SLACK:
        return text, 0
    omitted = len(text) - 2 * chars
    return f"{text[:chars]}\n… [{omitted} characters omitted] …\n{text[-chars:] if chars else ''}", omitted


# --- the release ---------------------------------------------------------------------------------

class Release:
    def __init__(self, output: str):
        self.output = output.rstrip("/") or output
        names = stats.stage_names(output)
        if not names:
            raise ShowError(f"{output}: not a release (no <stage>/_stats/*.parquet found)")
        self.manifest = io.read_json(io.join(output, "manifest.json")) if io.exists(
            io.join(output, "manifest.json")) else None
        enabled = self._enabled()
        self.stages = [s for s in names if s != "read" and (enabled is None or s in enabled)]
        self.doc_stages = [s for s in self.stages if self.parts(s)]
        self.con = duckdb.connect()
        self.seed = "0"
        self._exists: dict[str, bool] = {}
        io.register_filesystem(self.con, output)

    def _enabled(self) -> set[str] | None:
        if self.manifest is None:
            return None
        return {k for k, v in (self.manifest.get("config", {}).get("stages") or {}).items() if v is not None}

    def parts(self, stage: str, folder: str = "") -> list[str]:
        return io.glob(self.output, f"{stage}/{folder}part-*.parquet")

    def input_of(self, stage: str, part: str) -> str | None:
        """The Parquet file `stage` read `part` from: the part of the last stage before it that wrote one
        (a JSONL part skips extract); None when it read the sources."""
        if stage not in self.stages:  # the reader
            return None
        for prev in reversed([s for s in self.doc_stages if self.stages.index(s) < self.stages.index(stage)]):
            file = io.join(self.output, prev, part)
            if file not in self._exists:
                self._exists[file] = io.exists(file)
            if self._exists[file]:
                return file
        return None

    def query(self, files: list[str], columns: str, where: str, params: list, order: bool = True,
              n: int | None = None) -> list[dict]:
        """Rows of `files` (with `filename`), seeded order, up to n distinct ids."""
        if not files:
            return []
        sql = (f"SELECT {columns}, filename FROM read_parquet({io.sql_list(files)}, filename=true, "
               f"union_by_name=true) WHERE {where}")
        if order:
            sql += " ORDER BY md5(CAST(? AS VARCHAR) || ':' || id), id"
        limit = None if n is None else 4 * n
        while True:
            args = params + ([self.seed] if order else [])
            cur = self.con.execute(sql + (f" LIMIT {limit}" if limit else ""), args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            unique = list({r["id"]: r for r in reversed(rows)}.values())[::-1]  # first row per id, in order
            if limit is None or len(rows) < limit or len(unique) >= n:
                return unique[:n] if n is not None else unique
            limit *= 4  # upsampled copies: the same id more than once

    def rows_by_id(self, file: str, ids: list[str]) -> dict[str, dict]:
        """The rows of one Parquet file with these ids (first row per id)."""
        marks = ", ".join("?" for _ in ids)
        cur = self.con.execute(f"SELECT * FROM read_parquet({io.sql_list([file])}) WHERE id IN ({marks})", ids)
        names = [d[0] for d in cur.description]
        found: dict[str, dict] = {}
        for r in cur.fetchall():
            row = dict(zip(names, r, strict=True))
            found.setdefault(row["id"], row)
        return found

    def columns(self, stage: str) -> list[str]:
        return io.read_schema(self.parts(stage)[0]).names

    def source(self, name: str | None):
        from pipelines.readers import SourceConfig

        for src in (self.manifest or {}).get("config", {}).get("sources", []):
            if src.get("name") == name:
                return SourceConfig(**src)
        return None


# --- choosing the documents ------------------------------------------------------------------------

def show(output: str, stage: str | None = None, reason: str | None = None, cluster: str | None = None,
         doc_id: str | None = None, n: int = 5, seed: int = 0) -> list[Shown]:
    """The documents to show, in the seeded order (see the module docstring)."""
    if n < 1:
        raise ShowError("-n must be at least 1")
    rel = Release(output)
    rel.seed = str(seed)
    if stage is not None and stage not in rel.stages:
        raise ShowError(f"unknown stage {stage!r}; this release has: {', '.join(rel.stages)}")
    if doc_id is not None:
        return [_by_id(rel, stage, doc_id)]
    if reason is not None:
        return _rejects(rel, stage, reason, n)
    if cluster is not None:
        return _cluster(rel, stage, cluster, n)
    stage = stage or _last_doc_stage(rel)
    if stage not in rel.doc_stages:
        raise ShowError(f"stage {stage!r} wrote no documents (stages with documents: {', '.join(rel.doc_stages)}); "
                        "use --reason to see its rejects")
    rows = rel.query(rel.parts(stage), "id", "true", [], n=n)
    return _kept(rel, stage, rows)


def _last_doc_stage(rel: Release) -> str:
    if not rel.doc_stages:
        raise ShowError(f"{rel.output}: no stage wrote documents")
    return rel.doc_stages[-1]


def _kept(rel: Release, stage: str, rows: list[dict]) -> list[Shown]:
    docs = _fetch(rel, rows)
    return [_shown(docs[r["id"]], stage, "kept", None, None, None, _rel_path(rel, r["filename"]),
                   docs[r["id"]].get("text")) for r in rows]


def _fetch(rel: Release, rows: list[dict]) -> dict[str, dict]:
    """The full rows of `rows` (each with its `filename`), one query per file."""
    by_file: dict[str, list[str]] = {}
    for r in rows:
        by_file.setdefault(r["filename"], []).append(r["id"])
    found: dict[str, dict] = {}
    for file, ids in by_file.items():
        found.update(rel.rows_by_id(file, ids))
    return found


def _rel_path(rel: Release, path: str) -> str:
    prefix = rel.output.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def _shown(doc: dict, stage: str, status: str, reason, detail, duplicate_of, text_from: str, text) -> Shown:
    return Shown(id=doc.get("id"), url=doc.get("url"), source=doc.get("source"), stage=stage, status=status,
                 reason=reason, detail=detail, duplicate_of=duplicate_of, input_file=doc.get("input_file"),
                 input_offset=doc.get("input_offset"), text_from=text_from, text=text)


REJECT_COLUMNS = "id, source, url, input_file, input_offset, stage, reason, detail, duplicate_of"
MATCH_REASON = ("(reason = ? OR starts_with(reason, ? || '.') OR stage = ? "
                "OR stage || '.' || reason = ? OR starts_with(stage || '.' || reason, ? || '.'))")


def _rejects(rel: Release, stage: str | None, reason: str, n: int) -> list[Shown]:
    files = rel.parts("*", "_rejects/")
    where, params = MATCH_REASON, [reason] * 5
    if stage is not None:
        where, params = f"stage = ? AND {where}", [stage, *params]
    rows = rel.query(files, REJECT_COLUMNS, where, params, n=n)
    if not rows:
        known = rel.con.execute(
            f"SELECT stage, reason, count(*) FROM read_parquet({io.sql_list(files)}, union_by_name=true) "
            + ("WHERE stage = ? " if stage else "") + "GROUP BY ALL ORDER BY stage, reason",
            [stage] if stage else []).fetchall() if files else []
        listing = "\n".join(f"  {escape(s or '', True)}  {escape(r or '', True)}  ({c})" for s, r, c in known)
        where = f" at stage {stage}" if stage else ""
        raise ShowError(f"no rejects with reason {reason!r}{where}; the reasons are:\n{listing or '  (none)'}")
    return _with_input(rel, rows, "rejected")


def _with_input(rel: Release, rows: list[dict], status: str) -> list[Shown]:
    """Rejected (or failed) documents with the text their stage received."""
    wanted: dict[str, list[str]] = {}  # the input Parquet file -> ids
    for r in rows:
        file = rel.input_of(r["stage"], os.path.basename(r["filename"]))
        if file is not None:
            wanted.setdefault(file, []).append(r["id"])
    found: dict[str, tuple[str, dict]] = {}
    for file, ids in wanted.items():
        found.update({i: (file, row) for i, row in rel.rows_by_id(file, ids).items()})
    out = []
    for r in rows:
        file = rel.input_of(r["stage"], os.path.basename(r["filename"]))
        detail = r.get("detail") if status == "rejected" else r.get("message")
        reason = r.get("reason") if status == "rejected" else r.get("error")
        if r["id"] in found:
            file, row = found[r["id"]]
            text_from, text = _rel_path(rel, file), row.get("text")
        elif file is None:
            text_from, text = _source_text(rel, r)
        else:
            text_from, text = f"not found in {_rel_path(rel, file)}", None
        out.append(_shown(r, r["stage"], status, reason, detail, r.get("duplicate_of"), text_from, text))
    return out


def _cluster(rel: Release, stage: str | None, cluster: str, n: int) -> list[Shown]:
    stage = stage or ("mixture" if "mixture" in rel.doc_stages else _last_doc_stage(rel))
    if stage not in rel.doc_stages or "cluster" not in rel.columns(stage):
        raise ShowError(f"the documents of stage {stage!r} have no `cluster` column (clusters come from the "
                        "mixture stage's CLIMB)")
    files = rel.parts(stage)
    rows = rel.query(files, "id", "cluster = ?", [cluster], n=n)
    if not rows:
        known = rel.con.execute(f"SELECT cluster, count(*) FROM read_parquet({io.sql_list(files)}, "
                                "union_by_name=true) GROUP BY 1 ORDER BY 1").fetchall()
        listing = ", ".join(f"{escape(str(c), True)} ({k})" for c, k in known)
        raise ShowError(f"no documents of {stage} in cluster {cluster!r}; the clusters are: {listing}")
    return _kept(rel, stage, rows)


def _by_id(rel: Release, stage: str | None, doc_id: str) -> Shown:
    kept_at = stage if stage is not None else (rel.doc_stages[-1] if rel.doc_stages else None)
    if kept_at in rel.doc_stages:
        rows = rel.query(rel.parts(kept_at), "id", "id = ?", [doc_id], order=False, n=1)
        if rows:
            return _kept(rel, kept_at, rows)[0]
    where, params = "id = ?", [doc_id]
    if stage is not None:
        where, params = "stage = ? AND id = ?", [stage, doc_id]
    rows = rel.query(rel.parts("*", "_rejects/"), REJECT_COLUMNS, where, params, order=False, n=1)
    if rows:
        return _with_input(rel, rows, "rejected")[0]
    where = where.replace("id = ?", "record_id = ?")
    rows = rel.query(rel.parts("*", "_errors/"), "record_id AS id, source, NULL AS url, input_file, input_offset, "
                     "stage, error, message", where, params, order=False, n=1)
    if rows:
        return _with_input(rel, rows, "error")[0]
    at = f"stage {stage}" if stage is not None else f"{kept_at}'s documents, the rejects or the errors"
    raise ShowError(f"id {doc_id!r} not found in {at}")


# --- source records ------------------------------------------------------------------------------

def _source_text(rel: Release, row: dict) -> tuple[str, str | None]:
    """The text of the source record at row's file and offset, as the first stage received it."""
    src = rel.source(row.get("source"))
    path, offset = row.get("input_file"), row.get("input_offset")
    if src is None or path is None or offset is None:
        return "source record not found (no manifest, or no file and offset)", None
    try:
        doc = source_record(src, path, offset)
    except OSError as exc:
        return f"source record unreadable: {type(exc).__name__}: {exc}", None
    if doc is None:
        return "source record not found at its offset", None
    if doc.get("payload") is not None:  # a WARC response: extract received the HTML payload
        return f"source record ({src.format}: the HTTP payload)", bytes(doc["payload"]).decode("utf-8", "replace")
    return f"source record ({src.format})", doc.get("text")


def source_record(src, path: str, offset: int) -> dict | None:
    """The raw document the reader makes of the record at `offset` of `path` (the reader's `input_offset`)."""
    from pipelines.readers import read_shard

    errors: list[dict] = []
    if src.format in ("warc", "wet"):
        doc = _warc_at(src, path, offset, errors)
        if doc is not None:
            return doc
    elif src.format == "parquet":
        return _parquet_row(src, path, offset, errors)
    for doc in read_shard(src, path, errors):  # jsonl (lines up to it), or a WARC record not at a member start
        if doc.get("input_offset") == offset:
            return doc
        if src.format == "jsonl" and doc.get("input_offset", -1) > offset:
            break
    return None


def _warc_at(src, path: str, offset: int, errors: list[dict]) -> dict | None:
    """The record at byte `offset`: seek there, read one record (fastwarc's offsets are absolute)."""
    from fastwarc import ArchiveIterator

    from pipelines.readers import MAX_PAYLOAD_BYTES
    from pipelines.readers.warc import _record

    wanted = "response" if src.format == "warc" else "conversion"
    with fsspec.open(path, "rb", **src.storage_options) as fh:
        fh.seek(offset)
        try:
            for rec in ArchiveIterator(fh, parse_http=False):
                if rec.stream_pos != offset or str(rec.record_type) != wanted:
                    return None
                return _record(rec, src, path, errors, wanted, MAX_PAYLOAD_BYTES)
        except Exception:  # noqa: BLE001 - damaged data: the caller falls back to reading the file
            return None
    return None


def _parquet_row(src, path: str, row: int, errors: list[dict]) -> dict | None:
    """Row `row` of a Parquet source, reading only its row group."""
    from pipelines.readers.text import _doc

    with fsspec.open(path, "rb", **src.storage_options) as fh:
        pf = pq.ParquetFile(fh)
        first = 0
        for group in range(pf.num_row_groups):
            rows = pf.metadata.row_group(group).num_rows
            if row < first + rows:
                record = pf.read_row_group(group).slice(row - first, 1).to_pylist()[0]
                return _doc(src, path, row, record, errors)
            first += rows
    return None


# --- output --------------------------------------------------------------------------------------

def as_json(doc: Shown, chars: int | None = HEAD_CHARS) -> str:
    """One line of ASCII JSON: the fields, `chars` (the text's length), `omitted` and the (clipped) text."""
    record = asdict(doc)
    text = doc.text or ""
    record["text"], record["omitted"] = clip(text, chars) if doc.text is not None else (None, 0)
    record["chars"] = len(text) if doc.text is not None else None
    return json.dumps(record, ensure_ascii=True)


def as_text(doc: Shown, index: int, total: int, chars: int | None = HEAD_CHARS) -> str:
    """A header and the escaped text, head and tail when long."""
    e = lambda v: escape(str(v), one_line=True) if v is not None else "-"  # noqa: E731
    if doc.status == "kept":
        what = f"kept by {doc.stage}"
    else:
        what = f"{doc.status} by {doc.stage}: {e(doc.reason)}" + (f" ({e(doc.detail)})" if doc.detail else "")
        if doc.duplicate_of:
            what += f", duplicate of {e(doc.duplicate_of)}"
    where = f"{e(doc.input_file)} @ {e(doc.input_offset)}"
    seen = "as it was kept" if doc.status == "kept" else f"as {doc.stage} received it"
    lines = [f"=== [{index}/{total}] {e(doc.id)}",
             f"url:    {e(doc.url)}",
             f"stage:  {what}",
             f"source: {e(doc.source)} {where}"]
    if doc.text is None:
        lines.append(f"text:   none ({e(doc.text_from)})")
        return "\n".join(lines)
    body, omitted = clip(doc.text, chars)
    cut = f", {omitted} omitted" if omitted else ""
    lines += [f"text:   {seen}, from {e(doc.text_from)} ({len(doc.text)} characters{cut})", "---",
              escape(body)]
    return "\n".join(lines)


def main(output: str, stage: str | None, reason: str | None, cluster: str | None, doc_id: str | None, n: int,
         seed: int, json_lines: bool, chars: int | None) -> int:
    """Prints the documents; raises ShowError for bad arguments."""
    if chars is not None and chars < 0:
        raise ShowError("--chars must be 0 or more")
    docs = show(output, stage, reason, cluster, doc_id, n, seed)
    if json_lines:
        for doc in docs:
            print(as_json(doc, chars))
    else:
        print("\n\n".join(as_text(doc, i + 1, len(docs), chars) for i, doc in enumerate(docs)))
    return 0
