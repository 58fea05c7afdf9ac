"""datatrove's MinHash dedup (signature -> buckets -> cluster -> filter), run inside bench/.venv-peers.

Same parameters as gristmill's default: word 5-grams, 14 buckets x 8 hashes, 64-bit hashes.
Prints one JSON line: documents read and kept.
"""

import argparse
import json

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True, help="folder of .jsonl files")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, hash_config=HashConfig(precision=64))
    tasks = len(list(__import__("pathlib").Path(args.input).glob("*.jsonl")))
    out = args.out
    steps = [
        ([JsonlReader(args.input), MinhashDedupSignature(f"{out}/signatures", config=config)], tasks),
        ([MinhashDedupBuckets(f"{out}/signatures", f"{out}/buckets", config=config)], config.num_buckets),
        ([MinhashDedupCluster(f"{out}/buckets", f"{out}/remove_ids", config=config)], 1),
        ([JsonlReader(args.input), MinhashDedupFilter(f"{out}/remove_ids"), JsonlWriter(f"{out}/output")], tasks),
    ]
    for i, (pipeline, n) in enumerate(steps):
        LocalPipelineExecutor(pipeline, tasks=n, workers=args.workers, logging_dir=f"{out}/logs/{i}").run()
    stats = json.load(open(f"{out}/logs/3/stats.json"))
    read = next(s for s in stats if "READER" in s["name"])["stats"]["documents"]["total"]
    kept = next(s for s in stats if "WRITER" in s["name"])["stats"]["total"]
    print(json.dumps({"docs_read": read, "docs_kept": kept}))


if __name__ == "__main__":
    main()
