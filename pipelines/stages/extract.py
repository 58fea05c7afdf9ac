"""extract: HTML payload -> main text (resiliparse or trafilatura), with charset repair.

Rejects (reason, detail): http_status, content_type, empty_payload, too_large, binary_payload,
timeout, no_text. Only formats whose records are HTML go through this stage. Decoding and extraction
run in an extractor process (see extractor_process), so that `timeout_seconds` holds for C code too.
"""

from collections.abc import Iterable
from typing import Literal

import pyarrow as pa
from pydantic import Field

from pipelines.documents import error, reject
from pipelines.readers import MAX_PAYLOAD_BYTES
from pipelines.stage import Stage, StageResult
from pipelines.stages.extractor_process import TIMEOUT, extract_batch
from scorers._config import StrictModel

NAME = "extract"
RAW_FIELDS = ("payload", "payload_size", "http_status", "http_content_type")


class ExtractConfig(StrictModel):
    """HTML payload -> main text. Charset: BOM, else valid UTF-8, else the HTTP header, else `<meta>`,
    else uchardet's guess (labels mapped as browsers do: ISO-8859-1 -> cp1252)."""

    extractor: Literal["resiliparse", "trafilatura"] = Field(
        "resiliparse", description="resiliparse, or trafilatura (about 10x slower)")
    main_content: bool = Field(True, description="keep the main content only (boilerplate removal)")
    content_types: tuple[str, ...] = Field(("text/html", "application/xhtml+xml"),
                                           description="HTTP content types extracted; others: `content_type` reject")
    max_payload_bytes: int = Field(MAX_PAYLOAD_BYTES, ge=1,
                                   description="larger payloads are `too_large` rejects, never parsed (nor kept "
                                               "in memory by the reader)")
    timeout_seconds: float = Field(10.0, gt=0,
                                   description="per document (decoding and extraction, C code included: the "
                                               "extractor process is killed and replaced); slower pages are "
                                               "`timeout` rejects")
    min_text_chars: int = Field(1, ge=0, description="shorter extracted text: `no_text` reject")


def _precheck(doc: dict, cfg) -> tuple[str, str | None] | None:
    status = doc.get("http_status")
    if status != 200:
        return "http_status", str(status)
    content_type = (doc.get("http_content_type") or "").split(";")[0].strip().lower()
    if content_type not in cfg.content_types:
        return "content_type", content_type or "missing"
    if doc["payload_size"] > cfg.max_payload_bytes:
        return "too_large", f"{doc['payload_size']} bytes"
    payload = doc["payload"]
    if not payload.strip():
        return "empty_payload", None
    if b"\x00" in payload[:8192]:
        return "binary_payload", None
    return None


def run(docs: Iterable[dict], cfg) -> StageResult:
    result = StageResult()
    charset_sources: dict[str, int] = {}
    docs = list(docs)
    failed = [_precheck(doc, cfg) for doc in docs]
    # decoding and extraction run in the extractor process, which is killed and replaced when a page
    # runs past timeout_seconds (C code included)
    jobs = [(doc["payload"], doc["http_content_type"]) for doc, f in zip(docs, failed, strict=True) if not f]
    outcomes = iter(extract_batch(jobs, cfg.extractor, cfg.main_content, cfg.timeout_seconds) if jobs else [])
    for doc, precheck in zip(docs, failed, strict=True):
        if precheck:
            result.rejects.append(reject(doc, NAME, *precheck, keep_text=False))
            continue
        outcome = next(outcomes)
        if outcome == TIMEOUT:
            result.rejects.append(reject(doc, NAME, "timeout", f"exceeded {cfg.timeout_seconds}s", keep_text=False))
            continue
        ok, *rest = outcome
        if not ok:  # a broken page must not stop the shard
            kind, message = rest
            result.errors.append(error(NAME, doc.get("source"), doc.get("input_file"), doc.get("input_offset"),
                                       kind, message, doc.get("id")))
            continue
        text, charset, charset_source = rest
        if len(text) < max(cfg.min_text_chars, 1):
            result.rejects.append(reject(doc, NAME, "no_text", None, keep_text=False))
            continue
        out = {k: v for k, v in doc.items() if k not in RAW_FIELDS}
        out.update(text=text, content_type=doc["http_content_type"], charset=charset, charset_source=charset_source)
        result.docs.append(out)
        charset_sources[charset_source] = charset_sources.get(charset_source, 0) + 1
    result.metrics = {f"charset_source.{k}": v for k, v in sorted(charset_sources.items())}
    return result


STAGE = Stage(
    name=NAME, config=ExtractConfig, run=run, reads_html=True,
    columns=(pa.field("content_type", pa.string()), pa.field("charset", pa.string()),
             pa.field("charset_source", pa.string())),  # bom | valid_utf8 | http | meta | detected
)
