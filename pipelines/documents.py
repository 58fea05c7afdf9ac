"""The documents contract: Arrow schemas for documents, rejects, errors and stats rows.

A document is a dict while a shard is in flight and a Parquet row at rest. Stages add columns
(declared in their `ADDED_COLUMNS`), never rename or drop earlier ones.
"""

import pyarrow as pa

DOC_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.large_string()),
    pa.field("url", pa.string()),
    pa.field("source", pa.string()),
    pa.field("input_file", pa.string()),
    pa.field("input_offset", pa.int64()),  # byte offset of the WARC record, line or row number otherwise
    pa.field("date", pa.string()),  # WARC-Date, or the input's `date` field
    pa.field("metadata", pa.string()),  # JSON of the input fields that have no column of their own
]

REJECT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("url", pa.string()),
        pa.field("input_file", pa.string()),
        pa.field("input_offset", pa.int64()),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),  # e.g. "gopher_quality.min_doc_words", "http_status"
        pa.field("detail", pa.string()),  # e.g. "404", "application/pdf"
        pa.field("duplicate_of", pa.string()),
        pa.field("text", pa.large_string()),
    ]
)

ERROR_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string()),
        pa.field("source", pa.string()),
        pa.field("input_file", pa.string()),
        pa.field("input_offset", pa.int64()),
        pa.field("record_id", pa.string()),
        pa.field("error", pa.string()),  # exception type or error kind
        pa.field("message", pa.string()),
    ]
)

STATS_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string()),
        pa.field("part", pa.string()),
        pa.field("source", pa.string()),
        pa.field("input_file", pa.string()),
        pa.field("metric", pa.string()),
        pa.field("value", pa.float64()),
    ]
)


def doc_schema(added: list[pa.Field]) -> pa.Schema:
    return pa.schema(DOC_FIELDS + added)


def reject(doc: dict, stage: str, reason: str, detail: str | None = None, keep_text: bool = True) -> dict:
    return {
        "id": doc.get("id"),
        "source": doc.get("source"),
        "url": doc.get("url"),
        "input_file": doc.get("input_file"),
        "input_offset": doc.get("input_offset"),
        "stage": stage,
        "reason": reason,
        "detail": detail,
        "duplicate_of": None,
        "text": doc.get("text") if keep_text else None,
    }


def error(stage: str, source: str, input_file: str, offset: int | None, kind: str, message: str,
          record_id: str | None = None) -> dict:
    return {
        "stage": stage,
        "source": source,
        "input_file": input_file,
        "input_offset": offset,
        "record_id": record_id,
        "error": kind,
        "message": message[:2000],
    }


def exception_error(stage: str, doc: dict, exc: BaseException) -> dict:
    """An error row for a document whose processing raised."""
    return error(stage, doc.get("source"), doc.get("input_file"), doc.get("input_offset"),
                 type(exc).__name__, str(exc) or repr(exc), doc.get("id"))


def encodable(text: str) -> bool:
    """False for strings Parquet and tokenizers cannot hold as-is (lone surrogates, e.g. from JSON escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
