"""filter: URL block list, language id, Gopher repetition + quality, C4, FineWeb, then PII redaction.

The order is FineWeb's. Every removed document is a reject whose reason names the rule
(`<rule block>.<rule>`, e.g. `gopher_quality.min_stop_words`); C4 rewrites text (drops lines)
and PII redaction rewrites kept documents.
"""

from collections.abc import Iterable

import pyarrow as pa

from pipelines.documents import exception_error, reject
from pipelines.stages.base import StageResult
from scorers import langid, pii
from scorers.heuristics import c4, fineweb, gopher, url_blocklist

NAME = "filter"
ADDED_COLUMNS = [
    pa.field("language", pa.string()),
    pa.field("language_score", pa.float64()),
    pa.field("pii_redactions", pa.int32()),
]


def applies_to(source_format: str) -> bool:
    return True


def _rules(cfg):
    """(name, fn) for the enabled text rules; fn returns (new_text, failed_rule)."""
    rules = []
    if cfg.gopher_repetition.enabled:
        rules.append(("gopher_repetition", lambda t: (t, gopher.check_repetition(t, cfg.gopher_repetition))))
    if cfg.gopher_quality.enabled:
        rules.append(("gopher_quality", lambda t: (t, gopher.check_quality(t, cfg.gopher_quality))))
    if cfg.c4.enabled:
        rules.append(("c4", lambda t: c4.clean(t, cfg.c4)))
    if cfg.fineweb.enabled:
        rules.append(("fineweb", lambda t: (t, fineweb.check(t, cfg.fineweb))))
    return rules


def run(docs: Iterable[dict], cfg) -> StageResult:
    """Filters one batch of documents (the shard-task bounds its size; fastText sees it in one call)."""
    result = StageResult()
    rules = _rules(cfg)
    redactions = 0
    batch = [dict(d) for d in docs]  # stages never change their input documents
    blocked = [url_blocklist.check(d.get("url"), cfg.url_blocklist) if cfg.url_blocklist.enabled else None
               for d in batch]
    if cfg.language.enabled:
        allowed = [d for d, b in zip(batch, blocked) if not b]
        for doc, (lang, score) in zip(allowed, langid.identify([d["text"] for d in allowed], cfg.language)):
            doc.update(language=lang, language_score=round(score, 6))
    for doc, failed in zip(batch, blocked):  # rejects stay in document order, whatever the batch
        if failed:
            result.rejects.append(reject(doc, NAME, f"url_blocklist.{failed}", doc.get("url")))
            continue
        try:
            kept = _apply(doc, cfg, rules, result)
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the shard
            result.errors.append(exception_error(NAME, doc, exc))
            continue
        if kept:
            redactions += doc["pii_redactions"] or 0
            result.docs.append(doc)
    result.metrics = {"pii_redactions": redactions}
    return result


def _apply(doc: dict, cfg, rules, result: StageResult) -> bool:
    if not doc["text"] or not doc["text"].strip():
        result.rejects.append(reject(doc, NAME, "empty_text"))
        return False
    if cfg.language.enabled:
        failed = langid.check(doc["language"], doc["language_score"], cfg.language)
        if failed:
            result.rejects.append(reject(doc, NAME, f"language.{failed}", doc["language"]))
            return False
    text = doc["text"]
    for name, rule in rules:
        new_text, failed = rule(text)
        if failed:
            result.rejects.append(reject(doc | {"text": text}, NAME, f"{name}.{failed}"))
            return False
        text = new_text
    doc["pii_redactions"] = None
    if cfg.pii.enabled:
        text, doc["pii_redactions"] = pii.redact(text, cfg.pii)
    doc["text"] = text
    return True
