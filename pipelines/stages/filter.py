"""filter: the rules of RULES in order (FineWeb's): URL block list, language id, Gopher repetition and
quality, C4, FineWeb, then PII redaction. Each rule is a `scorers.rule.Rule`; adding one is a module
with its config and check, and an entry here.

Every removed document is a reject whose reason names the rule (`<rule>.<reason>`, e.g.
`gopher_quality.min_stop_words`); documents with empty text are rejected as `empty_text` before the
first rule that reads text. C4 and PII rewrite the text of the documents they keep.
"""

from collections.abc import Iterable

from pydantic import Field, create_model

from pipelines.documents import exception_error, reject
from pipelines.errors import ConfigError
from pipelines.io import exists
from pipelines.stage import CheckContext, Stage, StageResult
from scorers import langid, pii
from scorers._config import StrictModel
from scorers.heuristics import c4, fineweb, gopher, url_blocklist

NAME = "filter"
RULES = (url_blocklist.RULE, langid.RULE, gopher.REPETITION, gopher.QUALITY, c4.RULE, fineweb.RULE, pii.RULE)
_FIRST_TEXT_RULE = next(i for i, r in enumerate(RULES) if r.needs_text)

FilterConfig = create_model(
    "FilterConfig", __base__=StrictModel,
    __doc__="Rules run in this order (FineWeb's), each with its published defaults; `enabled: false` skips one.",
    **{r.name: (r.config, Field(r.config(), description=" ".join(r.config.__doc__.split()))) for r in RULES},
)


def run(docs: Iterable[dict], cfg) -> StageResult:
    """Filters one batch of documents rule by rule (the shard-task bounds its size; a rule's `prepare`
    sees the batch in one call). Rejects and errors keep document order, whatever the batch."""
    batch = [dict(d) | {c.name: None for r in RULES for c in r.columns} for d in docs]  # never change the input
    removed: dict[int, tuple[str, dict]] = {}  # position -> ("rejects" | "errors", row)
    alive = list(range(len(batch)))
    for k, rule in enumerate(RULES):
        if k == _FIRST_TEXT_RULE:
            alive = _drop_empty(batch, alive, removed)
        rule_cfg = getattr(cfg, rule.name)
        if not rule_cfg.enabled:
            continue
        if rule.prepare is not None and alive:
            rule.prepare([batch[i] for i in alive], rule_cfg)
        kept = []
        for i in alive:
            doc = batch[i]
            try:
                reason = rule.check(doc, rule_cfg)
            except Exception as exc:  # noqa: BLE001 - one bad document must not stop the shard
                removed[i] = ("errors", exception_error(NAME, doc, exc))
                continue
            if reason:
                detail = doc.get(rule.detail) if rule.detail else None
                removed[i] = ("rejects", reject(doc, NAME, f"{rule.name}.{reason}", detail))
            else:
                kept.append(i)
        alive = kept
    result = StageResult(docs=[batch[i] for i in alive])
    for i in sorted(removed):
        kind, row = removed[i]
        getattr(result, kind).append(row)
    result.metrics = {r.count: sum(d[r.count] or 0 for d in result.docs) for r in RULES if r.count}
    return result


def _drop_empty(batch: list[dict], alive: list[int], removed: dict) -> list[int]:
    for i in alive:
        if not batch[i]["text"] or not batch[i]["text"].strip():
            removed[i] = ("rejects", reject(batch[i], NAME, "empty_text"))
    return [i for i in alive if i not in removed]


def check(cfg, ctx: CheckContext) -> None:
    """Files the rules name must exist."""
    if cfg.language.enabled and not exists(langid.model_path(cfg.language)):
        raise ConfigError(f"language.model_path: file not found: {langid.model_path(cfg.language)}")
    if cfg.url_blocklist.enabled and cfg.url_blocklist.domains_file and not exists(cfg.url_blocklist.domains_file):
        raise ConfigError(f"url_blocklist.domains_file: file not found: {cfg.url_blocklist.domains_file}")


def produces(cfg) -> list[str]:
    return [c.name for r in RULES if getattr(cfg, r.name).enabled for c in r.columns]


STAGE = Stage(name=NAME, config=FilterConfig, check=check, run=run, produces=produces,
              columns=tuple(c for r in RULES for c in r.columns))
