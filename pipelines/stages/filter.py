"""filter: the rules of RULES in order (FineWeb's): URL block list, language id, Gopher repetition and
quality, C4, FineWeb, then PII redaction. Each rule is a `scorers.rule.Rule`; adding one is a module
with its config and check, and an entry here.

`recipe` presets the rules' settings: `fineweb` (the default: FineWeb's decisions as datatrove, which
made it, takes them; bench/filter_agreement.py measures the agreement), `gopher` (Gopher's two blocks
as the paper words them) or `c4` (C4's block as C4 sets it). A setting given in the config wins over
the recipe's. The rules split words with the document's language when the language rule has set it.

Every removed document is a reject whose reason names the rule (`<rule>.<reason>`, e.g.
`gopher_quality.min_stop_words`); documents with empty text are rejected as `empty_text` before the
first rule that reads text. C4 and PII rewrite the text of the documents they keep.
"""

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, create_model, model_validator

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
_RULE_COLUMNS = {c.name: None for r in RULES for c in r.columns}  # None where a rule is off or did not run
# runs of rules, each starting at a rule that prepares a batch (language id): [(start, end)]
_STARTS = [0] + [k for k, r in enumerate(RULES) if r.prepare is not None and k > 0]
_RUNS = list(zip(_STARTS, _STARTS[1:] + [len(RULES)]))

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "fineweb": {},  # the rules' own defaults
    "gopher": {
        "gopher_repetition": {"words": "whitespace"},
        "gopher_quality": {"words": "whitespace", "bullets": gopher.PAPER_BULLETS, "stop_words_ignore_case": True},
        "c4": {"enabled": False},
        "fineweb": {"enabled": False},
    },
    "c4": {
        "gopher_repetition": {"enabled": False},
        "gopher_quality": {"enabled": False},
        "c4": {"filter_no_terminal_punct": True},
        "fineweb": {"enabled": False},
    },
}


class _Recipe(StrictModel):
    recipe: Literal["fineweb", "gopher", "c4"] = Field(
        "fineweb", description="presets of the rules' settings (a setting given here wins): `fineweb`: FineWeb's "
        "decisions as datatrove takes them (spaCy words, C4 without the terminal-punctuation line rule); `gopher`: "
        "only the two Gopher blocks, whitespace words, the paper's bullets, stop words in any case; `c4`: only the "
        "C4 block, with C4's terminal-punctuation line rule")

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("recipe", "fineweb") not in RECIPES:
            return data  # the field's own validation reports a bad recipe
        data = dict(data)
        for rule, preset in RECIPES[data.get("recipe", "fineweb")].items():
            given = data.get(rule, {})
            data[rule] = {**preset, **given} if isinstance(given, dict) else given
        return data


FilterConfig = create_model(
    "FilterConfig", __base__=_Recipe,
    __doc__="Rules run in this order (FineWeb's), each with its published defaults as the recipe reads them; "
            "`enabled: false` skips one.",
    **{r.name: (r.config, Field(r.config(), description=" ".join(r.config.__doc__.split()))) for r in RULES},
)


def run(docs: Iterable[dict], cfg) -> StageResult:
    """Filters one batch of documents (the shard-task bounds its size). Each document goes through the
    rules in order, so the word splits the rules share are cached once per document; a rule with a
    `prepare` first sees the documents still kept in one call. Rejects and errors keep document order."""
    batch = [dict(d) | _RULE_COLUMNS for d in docs]  # the filter's own copies: never change the input
    removed: dict[int, tuple[str, dict]] = {}  # position -> ("rejects" | "errors", row)
    alive = list(range(len(batch)))
    for start, end in _RUNS:
        rules = [(k, RULES[k], getattr(cfg, RULES[k].name)) for k in range(start, end)]
        _, first, first_cfg = rules[0]
        if first.prepare is not None and first_cfg.enabled and alive:
            first.prepare([batch[i] for i in alive], first_cfg)
        alive = [i for i in alive if _passes(batch[i], i, rules, removed)]
    result = StageResult(docs=[batch[i] for i in alive])
    for i in sorted(removed):
        kind, row = removed[i]
        getattr(result, kind).append(row)
    result.metrics = {r.count: sum(d[r.count] or 0 for d in result.docs) for r in RULES if r.count}
    return result


def _passes(doc: dict, i: int, rules: list, removed: dict) -> bool:
    """Runs `rules` on one document; records why it is removed, if it is."""
    for k, rule, rule_cfg in rules:
        if k == _FIRST_TEXT_RULE and (not doc["text"] or not doc["text"].strip()):
            removed[i] = ("rejects", reject(doc, NAME, "empty_text"))
            return False
        if not rule_cfg.enabled:
            continue
        try:
            reason = rule.check(doc, rule_cfg)
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the shard
            removed[i] = ("errors", exception_error(NAME, doc, exc))
            return False
        if reason:
            detail = doc.get(rule.detail) if rule.detail else None
            removed[i] = ("rejects", reject(doc, NAME, f"{rule.name}.{reason}", detail))
            return False
    return True


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
