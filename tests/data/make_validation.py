"""Builds tests/data/validation/python-docs.jsonl: the text of docs.python.org pages of
../shared/data/crawl-sample that are NOT in tests/data/sample (so a release on the sample never
trains on them). The CLIMB proxy measures bits per byte on it: a target set for "Python docs".
Usage: python tests/data/make_validation.py ../shared/data/crawl-sample tests/data/sample OUT.jsonl
"""

import glob
import hashlib
import json
import sys

from pipelines.config import ExtractConfig, SourceConfig
from pipelines.readers import read_shard
from pipelines.stages import extract

HOST = "https://docs.python.org/"
MAX_DOCS, MAX_CHARS = 25, 8000


def pages(pattern: str) -> list[dict]:
    src = SourceConfig(name="crawl", paths=[pattern], format="warc")
    return [d for path in sorted(glob.glob(pattern)) for d in read_shard(src, path, [])]


def main(crawl: str, sample: str, out: str) -> None:
    seen = {d["url"] for d in pages(f"{sample}/*.warc.gz")}
    rest = [d for d in pages(f"{crawl}/*.warc.gz") if d["url"].startswith(HOST) and d["url"] not in seen]
    docs = [d for d in extract.run(rest, ExtractConfig()).docs if len(d["text"]) > 500]
    docs.sort(key=lambda d: hashlib.sha1(d["url"].encode()).hexdigest())
    with open(out, "w") as fh:
        for d in docs[:MAX_DOCS]:
            fh.write(json.dumps({"id": d["url"], "text": d["text"][:MAX_CHARS]}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
