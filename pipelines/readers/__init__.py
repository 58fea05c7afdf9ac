"""Sources and their readers: a reader turns one input file into raw records (dicts), appending
unreadable ones to `errors`. `read_shard(source, path, errors, max_payload_bytes)` dispatches on the
source's format; `SourceConfig` is a release's `sources:` entry."""

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from pipelines.readers.text import read_jsonl, read_parquet
from pipelines.readers.warc import read_warc
from scorers._config import StrictModel

HTML_FORMATS = ("warc",)  # formats whose records are HTML: they need a stage that reads HTML (extract)
MAX_PAYLOAD_BYTES = 10_000_000  # a reader keeps no more of a payload unless the HTML stage allows more


class SourceConfig(StrictModel):
    """One source of a release: files of one format."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="source name (the `source` column of documents)")
    paths: list[str] = Field(min_length=1, description="files or globs, local or fsspec URIs (s3://…)")
    format: Literal["warc", "wet", "jsonl", "parquet"] = Field(
        description="warc (HTML, needs extract) | wet | jsonl (.gz/.zst/plain) | parquet")
    text_field: str = Field("text", description="jsonl/parquet: the field holding the text")
    id_field: str | None = Field("id", description="jsonl/parquet: the id field; absent values fall back to "
                                                   "`<source>/<file>#<line-or-row>`")
    url_field: str | None = Field("url", description="jsonl/parquet: the URL field")
    storage_options: dict = Field(default_factory=dict,
                                  description="passed to fsspec (e.g. s3 endpoint); credentials belong in the "
                                              "environment")


READERS = {
    "warc": lambda src, path, errors, limit: read_warc(src, path, errors, "response", limit),
    "wet": lambda src, path, errors, limit: read_warc(src, path, errors, "conversion", limit),
    "jsonl": lambda src, path, errors, limit: read_jsonl(src, path, errors),
    "parquet": lambda src, path, errors, limit: read_parquet(src, path, errors),
}


def read_shard(source: SourceConfig, path: str, errors: list[dict],
               max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> Iterator[dict]:
    return READERS[source.format](source, path, errors, max_payload_bytes)
