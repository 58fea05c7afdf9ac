"""Sources and their readers: a reader turns one input file into raw records (dicts), appending
unreadable ones to `errors`. `read_shard(source, path, errors, max_payload_bytes)` dispatches on the
source's format; `SourceConfig` is a release's `sources:` entry."""

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from pipelines.readers.text import DEFAULT_MAX_RECORD_BYTES, read_jsonl, read_parquet
from pipelines.readers.warc import read_warc
from scorers._config import StrictModel

HTML_FORMATS = ("warc",)  # formats whose records are HTML: they need a stage that reads HTML (extract)
MAX_PAYLOAD_BYTES = 10_000_000  # a reader keeps no more of a payload unless the HTML stage allows more
# option names that hold secrets (s3fs key/secret/token, gcsfs token, adlfs account_key, ...)
SECRET_OPTION = re.compile(r"(^|_)(key|secret|token|password|passwd|credentials?|connection_string)$", re.I)
NOT_SECRETS = ("anon", "google_default", "cloud", "browser")  # gcsfs `token` modes
USER_INFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*@", re.I)  # s3://key:secret@bucket/...


def _secrets(options, at: str = "") -> list[str]:
    if isinstance(options, dict):
        return [f"{at}{k}" for k, v in options.items() if SECRET_OPTION.search(str(k)) and isinstance(v, str)
                and v not in NOT_SECRETS] + [name for k, v in options.items() for name in _secrets(v, f"{at}{k}.")]
    return []


class SourceConfig(StrictModel):
    """One source of a release: files of one format."""

    model_config = ConfigDict(hide_input_in_errors=True)  # an error must not echo a secret put here

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="source name (the `source` column of documents)")
    paths: list[str] = Field(min_length=1, description="files or globs, local or fsspec URIs (s3://…)")
    format: Literal["warc", "wet", "jsonl", "parquet"] = Field(
        description="warc (HTML, needs extract) | wet | jsonl (.gz/.zst/plain) | parquet")
    text_field: str = Field("text", description="jsonl/parquet: the field holding the text")
    id_field: str | None = Field("id", description="jsonl/parquet: the id field; absent or empty values fall back to "
                                                   "`<source>/<file>#<line-or-row>`")
    url_field: str | None = Field("url", description="jsonl/parquet: the URL field")
    storage_options: dict = Field(default_factory=dict,
                                  description="passed to fsspec (e.g. s3 endpoint); credentials belong in the "
                                              "environment")
    max_record_bytes: int = Field(DEFAULT_MAX_RECORD_BYTES, ge=1,
                                  description="jsonl: a longer line, parquet: a longer text, is an error row "
                                              "(`TooLarge`); the line is read past without being held in memory")

    # the config is written to the manifest and hashed into markers: a secret in it would be shipped
    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, options: dict) -> dict:
        found = _secrets(options)
        if found:
            raise ValueError(f"{found[0]}: credentials do not belong in the config (it is written to the "
                             "release's manifest); set them in the environment (e.g. AWS_ACCESS_KEY_ID, "
                             "AWS_SECRET_ACCESS_KEY) or the filesystem's credentials file")
        return options

    @field_validator("paths")
    @classmethod
    def _no_user_info(cls, paths: list[str]) -> list[str]:
        if any(USER_INFO.match(p) for p in paths):
            raise ValueError("a URI with user:password@ puts credentials in the config; set them in the environment")
        return paths


READERS = {
    "warc": lambda src, path, errors, limit: read_warc(src, path, errors, "response", limit),
    "wet": lambda src, path, errors, limit: read_warc(src, path, errors, "conversion", limit),
    "jsonl": lambda src, path, errors, limit: read_jsonl(src, path, errors),
    "parquet": lambda src, path, errors, limit: read_parquet(src, path, errors),
}


def read_shard(source: SourceConfig, path: str, errors: list[dict],
               max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> Iterator[dict]:
    return READERS[source.format](source, path, errors, max_payload_bytes)
