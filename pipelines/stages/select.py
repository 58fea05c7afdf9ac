"""select: keep the documents inside every rule over score columns (after `score`, as dolma's mixer
applies thresholds to its taggers' attributes). Rules are typed, never evaluated Python; a document
outside a rule is a reject with reason `select.<column>` and its value as detail. Changing a rule
reruns this stage and what follows, never the models.
"""

from collections.abc import Iterable
from typing import Literal

from pydantic import Field, RootModel

from pipelines.documents import reject
from pipelines.errors import ConfigError
from pipelines.stage import CheckContext, Stage, StageResult
from scorers._config import StrictModel
from scorers.dataman.students import DATAMAN_COLUMNS

NAME = "select"
ScoreColumn = Literal[("preselect_score", "language_score", "domain") + DATAMAN_COLUMNS]


class SelectRule(StrictModel):
    """Keep documents whose `column` lies in [min, max] (or, for `domain`, is one of `values`)."""

    column: ScoreColumn = Field(description="language_score (filter), preselect_score, dataman_<criterion>, "
                                            "dataman_overall, domain (score)")
    min: float | None = Field(None, description="lowest value kept")
    max: float | None = Field(None, description="highest value kept")
    top_fraction: float | None = Field(None, gt=0, le=1,
                                       description="keep the best-scored share of characters: `min` becomes the "
                                                   "threshold recorded with the model for this share (the "
                                                   "manifest shows it)")
    values: list[str] | None = Field(None, description="for `domain`: the values kept")


class SelectConfig(RootModel[list[SelectRule]]):
    """A list of rules; a document must pass every one, e.g. `[{column: preselect_score, top_fraction: 0.5}]`."""

    model_config = {"frozen": True}


def outside(rule: SelectRule, value) -> bool:
    """Whether `value` fails a typed select rule."""
    if rule.values is not None:
        return value not in rule.values
    return value is None or (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max)


def run(docs: Iterable[dict], cfg: SelectConfig) -> StageResult:
    result = StageResult()
    for doc in docs:
        failed = next((rule for rule in cfg.root if outside(rule, doc.get(rule.column))), None)
        if failed is None:
            result.docs.append(doc)
        else:
            result.rejects.append(reject(doc, NAME, f"select.{failed.column}", f"{doc.get(failed.column)}"))
    return result


def check(cfg: SelectConfig, ctx: CheckContext) -> None:
    produced = ctx.produced()
    for i, rule in enumerate(cfg.root):
        if rule.column not in produced:
            raise ConfigError(f"[{i}].column: {rule.column} is not produced by the stages configured before select")


def resolve(cfg: SelectConfig, ctx: CheckContext) -> SelectConfig:
    """`top_fraction` rules get the threshold the scorer recorded for that share as their `min`."""
    rules = []
    for i, rule in enumerate(cfg.root):
        if rule.top_fraction is not None:
            try:
                rule = rule.model_copy(update={"min": ctx.threshold(rule.column, rule.top_fraction)})
            except KeyError as exc:
                raise ConfigError(f"[{i}].top_fraction: {exc.args[0]}") from None
        rules.append(rule)
    return SelectConfig(rules)


STAGE = Stage(name=NAME, config=SelectConfig, check=check, resolve=resolve, run=run)
