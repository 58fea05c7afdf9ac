"""A sample of a source's texts (WARC records through the extract stage), in an order seeded by
content: what PreSelect and DataMan train on, and the target set of CLIMB's proxy."""

import hashlib

from pipelines.io import expand_paths
from pipelines.readers import SourceConfig, read_shard
from pipelines.stages import extract


def iter_texts(source: SourceConfig):
    """(id, text) of every document with text, file by file as a release lists them (sorted, each once;
    one file's records in memory at a time)."""
    for path in sorted({f for pattern in source.paths for f in expand_paths(pattern, source.storage_options)}):
        records = read_shard(source, path, [])
        if source.format == "warc":
            records = extract.run(list(records), extract.ExtractConfig()).docs
        yield from ((d["id"], d["text"]) for d in records if d.get("text") and d["text"].strip())


def sample_texts(source: SourceConfig, max_docs: int) -> list[tuple[str, str]]:
    """(id, text) of up to `max_docs` documents with text."""
    docs = list(iter_texts(source))
    docs.sort(key=lambda d: hashlib.sha1(d[0].encode()).hexdigest())  # a seeded-by-content order
    return docs[:max_docs]
