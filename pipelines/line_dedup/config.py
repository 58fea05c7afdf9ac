"""The line_dedup stage's config."""

from typing import Literal

from pydantic import Field

from scorers._config import StrictModel


class LineDedupConfig(StrictModel):
    """Boilerplate removal: a line (or paragraph) found in more than `max_docs` documents of the release,
    and of the earlier releases named in `against`, is removed from every document's text. Each kept
    document records the characters removed in `line_dedup_chars_removed`; a document that lost units and
    keeps fewer than `min_doc_chars` characters is a reject with `reason=boilerplate_only`."""

    unit: Literal["line", "paragraph"] = Field("line", description="what is counted and removed: lines, or "
                                                                  "paragraphs (blocks separated by blank lines)")
    max_docs: int = Field(100, ge=1, description="a unit found in more documents than this (each document counted "
                                                 "once) is removed everywhere")
    min_unit_chars: int = Field(10, ge=1, description="units shorter than this once normalised (blank lines, "
                                                      "'Home') are never counted nor removed")
    lowercase: bool = Field(False, description="normalise: lowercase (whitespace is always collapsed)")
    min_doc_chars: int = Field(50, ge=0, description="a document that lost units and keeps fewer non-blank "
                                                     "characters than this is a `boilerplate_only` reject")
    buckets: int = Field(16, ge=1, description="unit keys are hash-partitioned into this many shuffle files")
    against: list[str] = Field(default_factory=list,
                               description="earlier releases (folders or globs) whose unit counts are added to "
                                           "this release's; a glob expands to the finished releases with a "
                                           "line_dedup index it matches, never this one, and may match nothing")
