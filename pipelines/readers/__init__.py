"""Readers turn one input file into raw records (dicts), appending unreadable ones to `errors`.

`read_shard(source, path, errors, max_payload_bytes)` dispatches on the source's format.
"""

from collections.abc import Iterator

from pipelines.readers.text import read_jsonl, read_parquet
from pipelines.readers.warc import read_warc

READERS = {
    "warc": lambda src, path, errors, limit: read_warc(src, path, errors, "response", limit),
    "wet": lambda src, path, errors, limit: read_warc(src, path, errors, "conversion", limit),
    "jsonl": lambda src, path, errors, limit: read_jsonl(src, path, errors),
    "parquet": lambda src, path, errors, limit: read_parquet(src, path, errors),
}


def read_shard(source, path: str, errors: list[dict], max_payload_bytes: int = 10_000_000) -> Iterator[dict]:
    return READERS[source.format](source, path, errors, max_payload_bytes)
