"""The decontaminate stage's config."""

from typing import Literal

from pydantic import Field, field_validator

from pipelines.readers import SourceConfig
from scorers._config import StrictModel


class BenchmarkConfig(SourceConfig):
    """An evaluation set to keep out of the release: files of one format, one item per record."""

    fields: list[str] = Field(["text"], min_length=1, description="the text fields of an item, joined with a space "
                                                                  "(a list value's elements are joined too)")


class DecontaminateConfig(StrictModel):
    """Documents that share word n-grams with a benchmark item are rejected (`mode: reject`), or lose the
    matching spans (`mode: remove_spans`). Both sides are normalised alike: lowercased, every character
    that is neither a word character nor whitespace dropped, split on whitespace. An item shorter than
    `ngram` words matches where its whole word sequence appears."""

    benchmarks: list[BenchmarkConfig] = Field(min_length=1, description="the evaluation sets, e.g. {name: mmlu, "
                                                                        "paths: [...], format: jsonl, fields: "
                                                                        "[question, answer]}")
    ngram: int = Field(13, ge=1, description="word n-grams after normalisation")
    min_matches: int = Field(1, ge=1, description="n-grams in common with one benchmark item for a document to "
                                                  "count as contaminated")
    mode: Literal["reject", "remove_spans"] = Field(
        "reject", description="reject: the document is a reject with reason decontaminate.<benchmark>; "
                              "remove_spans: the matching spans, with a margin of `ngram` words, are cut out")
    min_doc_chars: int = Field(200, ge=0, description="remove_spans: a document left with fewer non-blank "
                                                      "characters is a reject")

    @field_validator("benchmarks")
    @classmethod
    def _unique_names(cls, benchmarks: list[BenchmarkConfig]) -> list[BenchmarkConfig]:
        names = [b.name for b in benchmarks]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"[{i}].name: {name!r} is used twice (it names the reject reason)")
        return benchmarks
