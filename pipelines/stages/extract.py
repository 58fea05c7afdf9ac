"""extract: HTML payload -> main text (resiliparse or trafilatura), with charset repair.

Rejects (reason, detail): http_status, content_type, empty_payload, too_large, binary_payload,
timeout, no_text. Only formats whose records are HTML go through this stage.
"""

from collections.abc import Iterable

import pyarrow as pa

from pipelines.documents import exception_error, reject
from pipelines.stages.base import StageResult
from pipelines.stages.charset import decode_html
from pipelines.stages.limits import DocumentTimeout, time_limit

NAME = "extract"
ADDED_COLUMNS = [
    pa.field("content_type", pa.string()),
    pa.field("charset", pa.string()),
    pa.field("charset_source", pa.string()),  # bom | valid_utf8 | http | meta | detected
]
RAW_FIELDS = ("payload", "payload_size", "http_status", "http_content_type")


def applies_to(source_format: str) -> bool:
    return source_format == "warc"


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


def _extract(html: str, cfg) -> str:
    if cfg.extractor == "trafilatura":
        import trafilatura

        return trafilatura.extract(html, include_comments=False, favor_precision=cfg.main_content) or ""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=cfg.main_content, alt_texts=False, links=False,
                              comments=False, list_bullets=True)


def run(docs: Iterable[dict], cfg) -> StageResult:
    result = StageResult()
    charset_sources: dict[str, int] = {}
    for doc in docs:
        failed = _precheck(doc, cfg)
        if failed:
            result.rejects.append(reject(doc, NAME, *failed, keep_text=False))
            continue
        try:
            with time_limit(cfg.timeout_seconds):
                html, charset, charset_source = decode_html(doc["payload"], doc["http_content_type"])
                text = _extract(html, cfg).strip()
        except DocumentTimeout as exc:
            result.rejects.append(reject(doc, NAME, "timeout", str(exc), keep_text=False))
            continue
        except Exception as exc:  # noqa: BLE001 - a broken page must not stop the shard
            result.errors.append(exception_error(NAME, doc, exc))
            continue
        if len(text) < max(cfg.min_text_chars, 1):
            result.rejects.append(reject(doc, NAME, "no_text", None, keep_text=False))
            continue
        out = {k: v for k, v in doc.items() if k not in RAW_FIELDS}
        out.update(text=text, content_type=doc["http_content_type"], charset=charset, charset_source=charset_source)
        result.docs.append(out)
        charset_sources[charset_source] = charset_sources.get(charset_source, 0) + 1
    result.metrics = {f"charset_source.{k}": v for k, v in sorted(charset_sources.items())}
    return result
