"""The one shape of a filter rule (the filter stage runs them in order, see pipelines/stages/filter.py).

`check(doc, cfg)` returns why the document is rejected (a short name; the filter writes
`<rule>.<reason>`, e.g. `gopher_quality.min_doc_words`) or None to keep it. A cleaning rule rewrites
`doc["text"]` when it keeps the document (C4 drops lines, PII redacts), and a rule may fill its
`columns`; `doc` is the filter's own copy. `prepare(docs, cfg)` runs once per batch, before the
checks, on the documents still kept (language id classifies them in one call).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pydantic import Field

from scorers._config import StrictModel


class RuleConfig(StrictModel):
    """A rule's config. A rule that is off does nothing, so its settings do not count in fingerprints."""

    enabled: bool = Field(True, description="run this rule")


@dataclass(frozen=True)
class Rule:
    name: str  # its key under stages.filter and the prefix of its reasons
    config: type[RuleConfig]
    check: Callable[[dict, Any], str | None]
    prepare: Callable[[list[dict], Any], None] | None = None
    columns: tuple[pa.Field, ...] = ()  # the columns it fills on kept documents (None when it is off)
    detail: str | None = None  # the column a reject's `detail` shows (e.g. the URL that was blocked)
    needs_text: bool = True  # False: runs before the empty-text check (it looks at the URL only)
    count: str | None = None  # a column whose sum over kept documents goes to the stats (e.g. pii_redactions)
